"""The data steward's review loop over quarantined and flagged rows."""
