"""Generators of the satellite systems, one module per kind of system (archetype).

Each module has ``build(context, entry) -> {dataset: Dataset}`` (rows with their planted
defects) and ``write(datasets, folder, entry) -> {dataset: path}``. The dataset names, columns
and file layouts are the ones the kind's archetype under ``mappings/_archetypes/`` declares.
"""
