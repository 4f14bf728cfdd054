"""Feature jobs: store x SKU x hour/day panels, the material panel, the ireplenishment history and exogenous
features, written to a Parquet feature store (``features.store.FeatureStore``) by ``features.job.build_features``.

Modules: ``extract`` (SQL aggregation, the only dialect-specific code), ``panels`` (local time, zero-fill),
``inventory`` (ireplenishment history, censoring), ``calendar`` (exogenous features), ``validate`` (quarantine),
``registry`` (schemas, known-in-advance flags), ``store`` (Parquet + manifest), ``job`` (orchestration).
"""
