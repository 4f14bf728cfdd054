"""How good it is: the day-by-day policy replay and the forecast metrics."""
