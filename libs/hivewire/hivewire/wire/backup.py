"""Backup payloads."""

from __future__ import annotations

from hivewire.wire.common import Wire


class RunRequest(Wire, kw_only=True):
    classes: list[str] = []


class SnapshotFile(Wire, kw_only=True):
    name: str
    source: str
    sha256: str
    size: int
    stored_size: int
    encrypted: bool = False
    rows: dict[str, int] = {}
    schema_version: int | None = None


class Snapshot(Wire, kw_only=True):
    snapshot_id: str
    created_at: float
    classes: list[str]
    files: list[SnapshotFile] = []
    target: str = "local"
    verified: bool | None = None


class SnapshotList(Wire, kw_only=True):
    snapshots: list[Snapshot]


class SnapshotRef(Wire, kw_only=True):
    snapshot_id: str


class VerifyReply(Wire, kw_only=True):
    snapshot_id: str
    ok: bool
    problems: list[str] = []


class RestoreRequest(Wire, kw_only=True):
    snapshot_id: str
    dest: str
    identity: str | None = None


class BackupDone(Wire, kw_only=True):
    snapshot_id: str
    ok: bool
    duration_s: float
    bytes: int
    error: str | None = None
