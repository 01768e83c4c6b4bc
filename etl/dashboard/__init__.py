"""The cutover dashboard: one honest picture of the migration, read from the core's own ledger.

``data`` reads (counts, codes, pseudonyms only), ``charts`` draws server-side SVG, ``auth`` says
who is asking and what they may do, ``app`` serves the pages (standalone with
``vardflytt dashboard``, or inside Airflow through ``airflow_plugin``).
"""
