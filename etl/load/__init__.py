"""Load: stage validated rows in the core database, upsert set-based, verify, account."""
