"""Prometheus metrics of hive-backup (a dead-man alert fires on a stale last success)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LAST_SUCCESS = Gauge(
    "hive_backup_last_success_timestamp_seconds", "Unix time of the last fully successful snapshot, per class.",
    ["cls"],
)
DURATION = Histogram(
    "hive_backup_duration_seconds", "Time to take one snapshot.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
LAST_BYTES = Gauge("hive_backup_last_snapshot_bytes", "Stored bytes of the last snapshot.")
BYTES = Counter("hive_backup_written_bytes_total", "Stored bytes written by snapshots.")
FAILURES = Counter("hive_backup_failures_total", "Backup failures, by stage.", ["stage"])
VERIFY = Counter("hive_backup_verify_total", "Verify and restore-drill results.", ["kind", "result"])
LAST_VERIFY_OK = Gauge("hive_backup_last_verify_ok", "1 if the last verify of a new snapshot passed, else 0.")
SNAPSHOTS = Gauge("hive_backup_snapshots", "Complete snapshots in the local target.")
SKIPPED = Counter(
    "hive_backup_skipped_files_total",
    "Files discovery left out of a snapshot: symlink, special (FIFO, socket, device), too_large, too_many, too_deep.",
    ["reason"],
)
REFUSED = Counter(
    "hive_backup_refused_total", "Snapshots refused by a restore or verify as unsafe (paths, members, sizes)."
)
