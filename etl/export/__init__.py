"""Vendor-neutral output of the core: FHIR R4 Bulk Data style NDJSON (``vardflytt export``)."""
