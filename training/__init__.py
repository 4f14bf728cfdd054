"""Models, rolling-origin backtests, uncertainty calibration, tuning and MLflow tracking (``replenish train`` etc.)."""
