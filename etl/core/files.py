"""Patient data on disk is the owner's alone: folders 0700, files 0600, a 077 umask.

The umask is narrowed where a process starts to work: the command line's entry and the settings
every Airflow task reads first (``etl.settings.get_settings``); child processes (``airflow
standalone`` started by ``vardflytt airflow``, and their tasks) inherit it. The places that hold
patient data are also set explicitly, so a folder made earlier under a wider umask, or a process
that never read its settings through ``get_settings``, still ends up owner-only: the landing zone
and its stage files, the SQLite core and rehearsal cores, evidence packs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

OWNER_ONLY_UMASK = 0o077
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def restrict_umask() -> None:
    """Files this process (and its children) create from now on are owner-only."""
    os.umask(os.umask(OWNER_ONLY_UMASK) | OWNER_ONLY_UMASK)


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) and set it to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Set an existing file to 0600."""
    os.chmod(path, PRIVATE_FILE)
    return path


def private_tree(root: Path) -> None:
    """Every folder under ``root`` (itself included) 0700, every file 0600; links are left as
    they are. Files may vanish while it walks (another task cleaning up): that is not an error."""
    if not root.exists():
        return
    os.chmod(root, PRIVATE_DIR)
    for folder, folders, names in os.walk(root):
        for name in folders:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(Path(folder, name), PRIVATE_DIR)
        for name in names:
            path = Path(folder, name)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(path.lstat().st_mode):
                    os.chmod(path, PRIVATE_FILE)


def write_private_json(path: Path, content: object) -> None:
    """Write ``content`` as JSON to an owner-only (0600) file, atomically (a temporary file
    renamed into place): a reader never sees half a file of secrets."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(content, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)
    os.chmod(path, PRIVATE_FILE)


def is_private(path: Path) -> bool:
    """Neither group nor others may read, write or enter it."""
    return not path.stat().st_mode & 0o077


# --- temporaries of a failed stage ------------------------------------------------------------

_TEMPORARIES: ContextVar[list[Path] | None] = ContextVar("vardflytt_temporaries", default=None)


def temporary_file(path: Path) -> Path:
    """Note ``path`` as a temporary file that the enclosing ``temporaries_removed_on_failure``
    removes if the stage fails (a writer's half-written Parquet, never renamed into place)."""
    opened = _TEMPORARIES.get()
    if opened is not None:
        opened.append(path)
    return path


@contextlib.contextmanager
def temporaries_removed_on_failure() -> Iterator[None]:
    """Run a stage; if it raises (or is killed by a signal Python sees), remove the temporary
    files it made. Only its own: stages of other entities may write beside it at the same time."""
    token = _TEMPORARIES.set([])
    try:
        yield
    except BaseException:
        for path in _TEMPORARIES.get() or []:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise
    finally:
        _TEMPORARIES.reset(token)


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex), read in blocks: memory bounded whatever its size."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# A file's SHA-256 by path, with the stat it was read under: read again only when the stat
# differs or the file changed too recently for its stat to tell (below).
_FILE_DIGESTS: dict[str, tuple[tuple[int, ...], bytes]] = {}
_FILE_DIGESTS_LOCK = threading.Lock()
# A file whose modification time is this close to now may change again within the same tick of
# the file system's clock (ext4: a few milliseconds) with its size kept: it is always read (the
# "racy" case git's index handles the same way).
RACY_SECONDS = 2.0


def _signature(status: os.stat_result) -> tuple[int, ...]:
    return (
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
    )


def file_digest(path: Path) -> bytes:
    """SHA-256 of the file's bytes, remembered per process while its stat (device, inode, size,
    modification and change time) stays the same and is older than ``RACY_SECONDS``."""
    status = os.stat(path)
    signature = _signature(status)
    key = str(path)
    with _FILE_DIGESTS_LOCK:
        known = _FILE_DIGESTS.get(key)
    if known is not None and known[0] == signature:
        return known[1]
    digest = hashlib.sha256(path.read_bytes()).digest()
    settled = time.time_ns() - max(status.st_mtime_ns, status.st_ctime_ns) > RACY_SECONDS * 1e9
    # Stat again: a file replaced or written while it was read is not remembered.
    if settled and _signature(os.stat(path)) == signature:
        with _FILE_DIGESTS_LOCK:
            _FILE_DIGESTS[key] = (signature, digest)
    return digest


def folder_digest(folder: Path) -> str:
    """A digest of the relative path and bytes of every file under ``folder``, links followed:
    the same names and bytes give the same digest (a cache key for what is read from the folder,
    such as the mappings catalog). An unreadable file or folder raises ``OSError``. A file's
    bytes are read again only when its stat changed (``file_digest``)."""
    digest = hashlib.sha256()
    for directory, subdirectories, names in os.walk(folder, onerror=_raise, followlinks=True):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            digest.update(str(path.relative_to(folder)).encode("utf-8", "surrogateescape") + b"\0")
            digest.update(file_digest(path))
    return digest.hexdigest()


def _raise(error: OSError) -> None:
    raise error
