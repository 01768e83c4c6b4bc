"""``folder_digest``: the cache key of what is read from a folder (the mappings catalog). A file's
bytes are read again only when its stat changed; a file changed too recently for its stat to
tell is always read."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from etl.core import files
from etl.core.files import RACY_SECONDS, file_digest, folder_digest

pytestmark = pytest.mark.unit


@pytest.fixture
def reads(monkeypatch):
    counted: list[str] = []
    read = Path.read_bytes

    def counting(self: Path) -> bytes:
        counted.append(self.name)
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    return counted


@pytest.fixture
def no_racy_window(monkeypatch):
    """Files made by the test count as settled at once (the window is tested on its own)."""
    monkeypatch.setattr(files, "RACY_SECONDS", -1.0)


def _reference(folder: Path) -> str:
    """The digest as defined: every file's relative path and the SHA-256 of its bytes, sorted."""
    digest = hashlib.sha256()
    for directory, subdirectories, names in os.walk(folder, followlinks=True):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def test_a_settled_file_is_read_once_and_the_digest_is_the_same(tmp_path, reads, no_racy_window):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text("x: 1\n")
    (tmp_path / "b.yaml").write_text("b: 2\n")
    first = folder_digest(tmp_path)
    assert first == _reference(tmp_path)
    reads.clear()
    assert folder_digest(tmp_path) == first
    assert reads == []


def test_a_file_changed_in_place_with_its_size_and_mtime_kept_is_read_again(
    tmp_path, reads, no_racy_window
):
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n")
    status = os.stat(path)
    before = folder_digest(tmp_path)
    path.write_text("a: 2\n")  # same size
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))  # the old mtime back
    after = folder_digest(tmp_path)
    assert after != before
    assert after == _reference(tmp_path)


def test_a_file_replaced_by_another_is_read_again(tmp_path, no_racy_window):
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n")
    before = folder_digest(tmp_path)
    replacement = tmp_path.parent / f"{tmp_path.name}-new.yaml"
    replacement.write_text("a: 3\n")
    os.replace(replacement, path)
    assert folder_digest(tmp_path) != before


def test_a_file_changed_within_the_racy_window_is_always_read(tmp_path, reads):
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n")
    assert time.time() - os.stat(path).st_mtime < RACY_SECONDS
    file_digest(path)
    reads.clear()
    file_digest(path)
    assert reads == ["m.yaml"]  # not remembered: its stat could not tell a change


def test_an_unreadable_file_raises(tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "missing")
    with pytest.raises(OSError):
        folder_digest(tmp_path)
