"""Identity resolution: the same person in many source systems becomes one core person.

``resolve`` (graph and conflict rules, pure), ``runs`` (resolve / decide / undo against the core
database), ``tables`` (person, person_link, identity_review, identity_resolution_run).
"""
