"""Backup payloads (`hive.backup.*`; docs/backup.md)."""

from __future__ import annotations

from hivewire.wire.common import Wire


class RunRequest(Wire, kw_only=True):
    """Take a snapshot now; `classes` empty means every enabled class."""

    classes: list[str] = []


class SnapshotFile(Wire, kw_only=True):
    """One stored object of a snapshot, as the manifest records it."""

    name: str  # object name inside the snapshot (relative path)
    source: str  # path relative to HIVE_HOME it was taken from
    sha256: str  # of the stored (compressed / encrypted) bytes
    size: int  # bytes of the content before compression
    stored_size: int
    encrypted: bool = False
    rows: dict[str, int] = {}
    schema_version: int | None = None
    kind: str = "sqlite"  # sqlite | git | secrets | tree
    cls: str = "databases"
    content_sha256: str = ""  # of the content after decompression / decryption


class Snapshot(Wire, kw_only=True):
    snapshot_id: str
    created_at: float
    classes: list[str]
    files: list[SnapshotFile] = []
    target: str = "local"
    verified: bool | None = None
    format: int = 1
    host: str = ""
    duration_s: float = 0.0
    bytes: int = 0
    recipients: list[str] = []
    skipped: list[str] = []  # sources found but not backed up, with the reason


class ListRequest(Wire, kw_only=True):
    target: str = "local"


class SnapshotList(Wire, kw_only=True):
    snapshots: list[Snapshot]


class SnapshotRef(Wire, kw_only=True):
    snapshot_id: str


class VerifyRequest(Wire, kw_only=True):
    snapshot_id: str
    target: str = "local"
    identity: str | None = None  # path of an age identity file, to also check secrets


class VerifyReply(Wire, kw_only=True):
    snapshot_id: str
    ok: bool
    problems: list[str] = []
    checked: int = 0


class RestoreRequest(Wire, kw_only=True):
    snapshot_id: str
    dest: str
    identity: str | None = None  # path of an age identity file; secrets are skipped without it
    in_place: bool = False
    only: list[str] = []  # restrict to these sources (paths relative to HIVE_HOME)
    target: str = "local"


class RestoreReply(Wire, kw_only=True):
    snapshot_id: str
    dest: str
    restored: list[str] = []
    skipped: list[str] = []


class PruneRequest(Wire, kw_only=True):
    dry_run: bool = False
    target: str = "local"


class PruneReply(Wire, kw_only=True):
    kept: list[str] = []
    deleted: list[str] = []


class Progress(Wire, kw_only=True):
    """Published on `hive.backup.progress` while a snapshot runs."""

    snapshot_id: str
    step: str
    done: int
    total: int
    item: str = ""


class BackupDone(Wire, kw_only=True):
    snapshot_id: str
    ok: bool
    duration_s: float
    bytes: int
    error: str | None = None
    classes: list[str] = []
    verified: bool | None = None
