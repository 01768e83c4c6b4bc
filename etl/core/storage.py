"""The storage root: where everything one task hands to the next lives, reachable by every worker.

``VARDFLYTT_STORAGE_ROOT`` is a folder (default: ``VARDFLYTT_HOME``; on a cluster, a shared
filesystem mounted at the same path on every worker) or an URL of an on-premises S3-compatible
store (``s3://bucket/prefix``), reached through fsspec (s3fs) with the options in
``VARDFLYTT_STORAGE_OPTIONS`` (JSON: ``endpoint_url``, ``key``, ``secret``, ...) or the standard
``AWS_*`` variables. Under the root, keys are the same whatever it is: ``landing/<batch>/<system>/
...`` (landed Parquet, manifests, stage files, quarantine), ``reports/validation/...``, ``docs/``
and ``evidence/<wave>/<label>/``.

With a folder as the root the stages read and write it in place, as they always have. With an
URL, a stage runs in a *workspace* (``workspace``): its part of the root (the batch's folder and
what it reads besides) is copied into a private scratch folder of this worker, the stage runs on
that copy unchanged, and when it succeeds what it wrote is uploaded (and what it removed is
removed). A failed stage uploads nothing. The scratch folder is this task's alone and is deleted
when the task ends, so no task reads another task's local disk and none relies on running where
its upstream ran. Copies stream in blocks (memory stays bounded); the price is one download of
the batch's folder per task, which a shared folder avoids. Readers outside a stage (the
dashboard, steward screening, a rehearsal's comparison) read through ``readable``: the folder
itself, or this host's copy of the bucket's folder, brought up to date at each read.

Each uploaded file is one object written whole (S3 replaces an object atomically), data files
before the manifests and summaries that point at them, so a reader finds a complete earlier or
later version of each file, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from etl.core import files, residency
from etl.core.redact import redact
from etl.settings import Settings

ROOT_SETTING = "the storage root (VARDFLYTT_STORAGE_ROOT)"
PSEUDONYM_KEY_VARIABLE = "VARDFLYTT_PSEUDONYM_KEY"  # etl.core.pseudonym, without its pandas
SUPPORTED_SCHEMES = ("s3",)
# Written last: they describe or point at the files written before them.
_POINTERS = (".json", ".md", ".html")
_PLACEHOLDER = ".vardflytt-remote-folder"


class StorageError(RuntimeError):
    """The storage root cannot be used as configured."""


def endpoint_url(settings: Settings) -> str | None:
    """The S3 endpoint the root is reached at: the options', else the AWS_* variables'."""
    options = settings.storage_options
    client = options.get("client_kwargs") or {}
    return (
        options.get("endpoint_url")
        or client.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def check_root(settings: Settings) -> None:
    """Refuse a storage root that is not allowed, before anything is read or written there.

    A folder must be under an allowed storage root. An URL must be listed itself (or a root URL
    above it) in VARDFLYTT_ALLOWED_STORAGE_ROOTS, its scheme must be one vardflytt supports, and
    its S3 endpoint must be named and on an allowed host: without an endpoint, s3fs would go to
    Amazon's public cloud, which is never on-premises."""
    root = settings.resolved_storage_root
    if not settings.is_remote_storage:
        residency.check_storage(settings.storage_dir, ROOT_SETTING, settings)
        return
    scheme = urlsplit(root).scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise StorageError(
            f"{ROOT_SETTING} is '{redact(root)}': scheme '{scheme}' is not supported; use a "
            "folder every worker mounts or an s3:// URL of an on-premises S3-compatible store"
        )
    residency.check_storage(root, ROOT_SETTING, settings)
    endpoint = endpoint_url(settings)
    host = urlsplit(endpoint).hostname if endpoint else None
    if not host:
        raise residency.ResidencyError(
            f"data residency: {ROOT_SETTING} is '{redact(root)}' but names no S3 endpoint, so "
            "s3fs would send patient data to Amazon's public cloud; nothing was written. Set "
            "endpoint_url in VARDFLYTT_STORAGE_OPTIONS (or AWS_ENDPOINT_URL) to the region's "
            "own store, on a host listed in VARDFLYTT_ALLOWED_HOSTS."
        )
    residency.Residency.of(settings).check_host(
        host, f"the S3 endpoint of {ROOT_SETTING} ({redact(endpoint or '')})"
    )
    # Workers on other hosts share no home: each would make its own pseudonym key, and the same
    # patient would get different pseudonyms in reports and in the access log.
    if not os.environ.get(PSEUDONYM_KEY_VARIABLE):
        raise StorageError(
            f"{ROOT_SETTING} is '{redact(root)}', so tasks run on several hosts, but "
            f"{PSEUDONYM_KEY_VARIABLE} is not set: give every worker the same key (a secret of "
            "at least 16 characters); nothing was written"
        )


def filesystem(settings: Settings) -> tuple[Any, str]:
    """The fsspec filesystem of a remote root and the root's path in it (``bucket/prefix``).

    Checked first (fail closed). Listings are never cached: another worker may have written
    since (read-after-write across workers is the storage's guarantee, not a cache's). The
    filesystem object itself is fsspec's cached instance for these options (per process: fsspec
    makes a new one after a fork): a new S3 client costs about 0.15 CPU s (botocore reads its
    service model again), and every pipeline stage opens a workspace or two."""
    import fsspec  # type: ignore[import-untyped]  # no type information (fsspec 2026.9)

    check_root(settings)
    root = settings.resolved_storage_root
    options = {
        k: v for k, v in settings.storage_options.items() if k not in ("use_listings_cache",)
    }
    fs = fsspec.filesystem(urlsplit(root).scheme, use_listings_cache=False, **options)
    return fs, fs._strip_protocol(root).rstrip("/")


def key_of(settings: Settings, path: Path) -> str:
    """``path`` (under the storage root's folder, or under a workspace's mirror of it) as a key
    relative to the root: what XCom and manifests carry, the same on every worker."""
    return path.relative_to(settings.storage_dir).as_posix()


def shared_dir(settings: Settings) -> Path:
    """Where commands outside a pipeline stage (evidence packs, mapping docs, the dashboard) keep
    shared state as a folder: the storage root itself, or with an URL root ``VARDFLYTT_HOME``
    (evidence packs written there are uploaded too, ``publish``; readers use ``readable``)."""
    return settings.home if settings.is_remote_storage else settings.storage_dir


def publish(settings: Settings, folder: Path, key: str) -> list[str]:
    """Upload ``folder`` (and its ``.zip`` beside it, when there is one) to ``key`` under an URL
    root; nothing to do under a folder root, where ``folder`` already is under the root."""
    if not settings.is_remote_storage:
        return []
    fs, remote_root = filesystem(settings)
    written = [f"{key}/{relative}" for relative, _path in _local_files(folder)]
    written.sort(key=lambda name: (name.endswith(("SHA256SUMS", *_POINTERS)), name))
    for name in written:
        fs.put_file(str(folder / name.removeprefix(f"{key}/")), f"{remote_root}/{name}")
    archive = folder.with_name(f"{folder.name}.zip")
    if archive.is_file():
        fs.put_file(str(archive), f"{remote_root}/{key}.zip")
        written.append(f"{key}.zip")
    return written


def readable(settings: Settings, key: str, only: Iterable[str] | None = None) -> Path:
    """The folder ``key`` of the storage root, to read outside a pipeline stage (the dashboard,
    a rehearsal comparing with the last pack): the folder itself under a folder root; under an
    URL root this host's copy of it (``VARDFLYTT_HOME/mirror/<key>``), brought up to date first:
    changed files downloaded, removed ones removed. Read-only: nothing is uploaded from it.
    ``only``: the names (relative to ``key``) to bring, when the reader needs a few files."""
    if not settings.is_remote_storage:
        return settings.storage_dir / key
    fs, remote_root = filesystem(settings)
    local = files.private_dir(settings.home / "mirror" / key)
    wanted_names = None if only is None else set(only)
    index_file = settings.home / "mirror" / ".index" / f"{key.replace('/', '__')}.json"
    index = _read_index(index_file)
    remote = f"{remote_root}/{key}"
    listing = fs.find(remote, detail=True) if fs.exists(remote) else {}
    wanted: dict[str, str] = {}
    for path, info in listing.items():
        relative = path[len(remote) + 1 :]
        if wanted_names is not None and relative not in wanted_names:
            continue
        wanted[relative] = f"{info.get('ETag', '')}:{info.get('size')}"
        target = local / relative
        if index.get(relative) != wanted[relative] or not target.is_file():
            _download(fs, path, target, info.get("LastModified"))
    for relative, path in list(_local_files(local)):
        if relative not in wanted and (wanted_names is None or relative in wanted_names):
            path.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):  # another thread's index replaced it first
        files.write_private_json(index_file, wanted)
    return local


def _read_index(path: Path) -> dict[str, str]:
    """What this host's copy holds (object tags by name); unreadable means nothing is trusted
    and every file is brought again."""
    try:
        content = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _download(fs: Any, remote: str, target: Path, modified: Any) -> None:
    """One file, written beside and renamed into place (a reader never sees half of it), with
    the object's time as its own: listings ordered by time stay in the writers' order."""
    files.private_dir(target.parent)
    # Unique per call: the dashboard's threads may bring the same file at once.
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        fs.get_file(remote, str(partial))
        if modified is not None and hasattr(modified, "timestamp"):
            os.utime(partial, (modified.timestamp(), modified.timestamp()))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    files.private_file(target)


# --- workspaces ---------------------------------------------------------------------------------


@dataclass
class _Mirror:
    """What a workspace downloaded: to upload only what the stage changed, remove only what it
    removed, and never overwrite a file another task wrote meanwhile with a stale copy."""

    fs: Any
    remote_root: str
    local_root: Path
    downloaded: dict[str, tuple[int, int]] = field(default_factory=dict)
    placeholders: list[str] = field(default_factory=list)

    def download(self, key: str) -> None:
        """Copy the folder ``key`` (recursively) into the mirror, if the root has it."""
        remote = f"{self.remote_root}/{key}"
        paths = sorted(self.fs.find(remote))
        if not paths:
            return
        relatives = [path[len(self.remote_root) + 1 :] for path in paths]
        for relative in relatives:
            files.private_dir((self.local_root / relative).parent)
        # One call for the folder: s3fs copies its files concurrently (each streamed in blocks).
        self.fs.get(paths, [str(self.local_root / relative) for relative in relatives])
        for relative in relatives:
            self.downloaded[relative] = _signature(files.private_file(self.local_root / relative))

    def stand_in(self, key: str) -> None:
        """An empty local folder standing for the root's folder ``key``, without its content:
        a stage may remove it (an abandoned batch superseded) and the root's folder goes too."""
        folder = files.private_dir(self.local_root / key)
        (folder / _PLACEHOLDER).touch()
        self.placeholders.append(key)

    def upload(self) -> list[str]:
        """Upload new and changed files (data first, pointers last); remove what was removed."""
        changed = [
            relative
            for relative, path in _local_files(self.local_root)
            if self.downloaded.get(relative) != _signature(path)
        ]
        # Data files first (concurrently), then the manifests and summaries that point at them.
        for is_pointer in (False, True):
            batch = sorted(r for r in changed if r.endswith(_POINTERS) == is_pointer)
            if batch:
                self.fs.put(
                    [str(self.local_root / relative) for relative in batch],
                    [f"{self.remote_root}/{relative}" for relative in batch],
                )
        for relative in sorted(
            set(self.downloaded) - {r for r, _ in _local_files(self.local_root)}
        ):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(f"{self.remote_root}/{relative}")
        for key in self.placeholders:
            if not (self.local_root / key).exists() and self.fs.exists(f"{self.remote_root}/{key}"):
                self.fs.rm(f"{self.remote_root}/{key}", recursive=True)
        return changed


def _signature(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def _local_files(root: Path) -> Iterator[tuple[str, Path]]:
    for folder, _folders, names in os.walk(root):
        for name in names:
            if name == _PLACEHOLDER:
                continue
            path = Path(folder, name)
            yield path.relative_to(root).as_posix(), path


def landing_key(batch_id: str, system: str) -> str:
    from etl.batch import safe_batch_id

    return f"landing/{safe_batch_id(batch_id)}/{system}"


@contextlib.contextmanager
def workspace(
    settings: Settings,
    keys: Iterable[str] = (),
    stand_ins: Iterable[str] = (),
) -> Iterator[Settings]:
    """Run a stage against the storage root; yields the settings the stage runs with.

    With a folder as the root: the settings unchanged (the stage works in place). With an URL:
    the folders ``keys`` of the root are copied into a private scratch folder, the yielded
    settings name that folder as the root, and on success the stage's changes are uploaded.
    ``stand_ins`` are folders the stage may remove without reading them."""
    if not settings.is_remote_storage:
        # (An unset root is VARDFLYTT_HOME, as the single-machine layout always had it.)
        if settings.storage_root is not None and not settings.storage_dir.is_absolute():
            raise StorageError(
                f"{ROOT_SETTING} is the relative path '{settings.storage_dir}': every worker "
                "would read it from its own working directory; give the absolute path of the "
                "folder every worker mounts"
            )
        yield settings
        return
    fs, remote_root = filesystem(settings)
    scratch = Path(tempfile.mkdtemp(prefix="storage-", dir=files.private_dir(settings.scratch_dir)))
    try:
        mirror = _Mirror(fs, remote_root, scratch)
        for key in keys:
            mirror.download(key)
        for key in stand_ins:
            if not (scratch / key).exists():
                mirror.stand_in(key)
        values = settings.model_dump()
        values.update(storage_root=str(scratch), storage_options={})
        yield Settings(**values)
        mirror.upload()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def system_batches(settings: Settings, system: str) -> list[str]:
    """The keys of every landed batch folder of ``system`` in a remote root."""
    if not settings.is_remote_storage:
        return []
    fs, remote_root = filesystem(settings)
    found = fs.glob(f"{remote_root}/landing/*/{system}")
    return sorted(path[len(remote_root) + 1 :] for path in found)
