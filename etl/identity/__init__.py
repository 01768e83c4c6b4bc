"""Identity resolution: the same person in many source systems becomes one core person.

``resolve`` (graph and conflict rules, pure), ``evidence`` (each link's evidence text, and the
Arrow and NumPy helpers resolve shares with it), ``runs`` (resolve / decide / undo against the core
database). The tables (person, person_link, identity_review, identity_resolution_run) are in
etl/core/identity_tables.py.
"""
