"""YAML read the fast way: libyaml's C parser when PyYAML was built with it.

The catalog alone is several hundred small files, read by every command and every task; the
pure-Python parser spends seconds on them. ``CSafeLoader`` builds the same plain Python values
(the safe constructor; no arbitrary objects), so callers need not know which parser ran.
"""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str | bytes) -> Any:
    """``yaml.safe_load``, through libyaml when available.

    A file libyaml rejects is parsed again by the Python parser, whose error quotes the lines
    around the problem (libyaml's gives only a position): the rare broken file gets the message
    that lets its author fix it."""
    try:
        return yaml.load(text, Loader=SafeLoader)
    except yaml.YAMLError:
        if SafeLoader is yaml.SafeLoader:
            raise
        return yaml.safe_load(text)  # raises the same error, quoting the lines
