"""Keyed pseudonyms: row references stewards can act on, that reveal nothing without the key.

HMAC-SHA256 over the source system and source key (source keys can be identity numbers), keyed
with ``VARDFLYTT_PSEUDONYM_KEY``. Without that variable, a random key is created once under
``<home>/secrets/pseudonym.key`` (mode 0600) so a local demo works; production sets the variable
from its secret store. The same key gives the same pseudonym run after run, so trends compare.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

from etl.settings import Settings

KEY_VARIABLE = "VARDFLYTT_PSEUDONYM_KEY"
PREFIX = "ps_"
LENGTH = 16  # hex characters: 64 bits, no collisions at a region's scale


class PseudonymKeyError(RuntimeError):
    """The configured pseudonym key is unusable."""


def pseudonym_key(settings: Settings) -> bytes:
    configured = os.environ.get(KEY_VARIABLE)
    if configured is not None:
        if len(configured) < 16:
            raise PseudonymKeyError(f"{KEY_VARIABLE} must be at least 16 characters long")
        return configured.encode("utf-8")
    path = Path(settings.home) / "secrets" / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a name of its own, then linked into place: parallel tasks creating
        # it at once (report tasks of a first run) all end up reading the one key that won.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_text("utf-8").strip().encode("utf-8")


def pseudonym(key: bytes, system: str, source_key: str) -> str:
    digest = hmac.new(key, f"{system}\x1f{source_key}".encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:LENGTH]


def pseudonymise(key: bytes, systems: pd.Series | str, source_keys: pd.Series) -> pd.Series:
    """Pseudonyms for many rows (NA stays NA). Keyed hashing has no vector form: each distinct
    (system, source key) is hashed once, then the pseudonyms are laid out over the rows (a
    report or worklist repeats a key once per check it failed)."""
    if isinstance(systems, str):
        systems = pd.Series(systems, index=source_keys.index)
    shown = pd.Series(pd.NA, index=source_keys.index, dtype="string")
    present = source_keys.notna().to_numpy(bool)
    for system in pd.unique(systems[present]):  # a handful of systems at most
        rows = present & (systems == system).fillna(False).to_numpy(bool)
        codes, distinct = pd.factorize(source_keys[rows])
        hashed = [pseudonym(key, str(system), str(k)) for k in distinct]
        shown[rows] = np.array(hashed, dtype=object)[codes]
    return shown
