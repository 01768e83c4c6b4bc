"""Transform: legacy rows to core rows, driven by the mapping specs in ``mappings/``."""
