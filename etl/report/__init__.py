"""Reports for data stewards: mapping documentation, source profiles and mapping coverage.

Safe by construction: they show counts, codes, column names and masked value *shapes*, never
identity numbers, names, addresses or free text (reports are read by people with no care
relationship to the patients). The documentation is generated from ``mappings/`` alone, so it
cannot disagree with what the pipeline runs.
"""
