"""Validate: Great Expectations suites from ``expectations/`` decide which rows may load."""
