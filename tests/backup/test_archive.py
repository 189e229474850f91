"""archive.SyncingFile / gzip_file: the output reaches the disk in bounded chunks, and round-trips."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hive_backup import archive


def test_gzip_output_is_flushed_as_it_grows_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(archive, "FLUSH_BYTES", 64 << 10)
    monkeypatch.setattr(archive.SyncingFile.__init__, "__defaults__", (64 << 10,))
    monkeypatch.setattr(os, "fdatasync", counting)
    src = tmp_path / "src.bin"
    data = os.urandom(3 << 20)  # incompressible: about 3 MiB of output
    src.write_bytes(data)
    sha, size = archive.gzip_file(src, tmp_path / "out.gz", level=1)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    out_size = (tmp_path / "out.gz").stat().st_size
    # flushed while writing (the writer waits once two chunks pile up), not once at the end
    assert len(synced) >= 2 and min(synced) < out_size, synced
    assert archive.gunzip_file(tmp_path / "out.gz", tmp_path / "back.bin") == sha
    assert (tmp_path / "back.bin").read_bytes() == data


def test_syncing_file_reports_a_failed_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(os, "fdatasync", failing)
    f = archive.SyncingFile(tmp_path / "x", flush_every=1024)
    with pytest.raises(OSError):
        for _ in range(100):
            f.write(b"x" * 1024)
        f.close()
