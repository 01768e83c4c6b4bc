"""Extract: read legacy sources in chunks (read-only) into a Parquet landing zone."""
