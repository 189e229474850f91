"""Prometheus metrics of hive-broker (names `hive_broker_*`, base units)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("hive_broker_messages_sent_total", "Messages stored (one per recipient).")
DELIVERED = Counter("hive_broker_messages_delivered_total", "Messages handed out by recv.")
ACKED = Counter("hive_broker_messages_acked_total", "Messages acknowledged.")
REDELIVERED = Counter(
    "hive_broker_messages_redelivered_total", "In-flight messages put back for redelivery.", ["cause"]
)
DUPLICATES = Counter("hive_broker_duplicate_sends_total", "Retried sends answered from the stored copy.")
ERRORS = Counter(
    "hive_broker_errors_total", "Requests answered with an error, by endpoint and code.", ["endpoint", "code"]
)
REMINDERS_FIRED = Counter("hive_broker_reminders_fired_total", "Reminders that came due and woke their agent.")
QUESTIONS_EXPIRED = Counter("hive_broker_questions_expired_total", "Questions answered [expired].")
RETENTION_DELETED = Counter("hive_broker_retention_deleted_total", "Acked messages deleted by retention.")
BAD_EVENTS = Counter(
    "hive_broker_bad_events_total", "Published events (presence) that were ignored.", ["subject"]
)
PUBLISH_FAILURES = Counter("hive_broker_publish_failures_total", "wake/changed publishes that failed.")
INDEXED = Counter("hive_broker_search_indexed_total", "Message bodies added to the full-text index.")
INDEX_REBUILDS = Counter(
    "hive_broker_search_index_rebuilds_total",
    "Times the full-text index was started over: its file unreadable (set aside), or built from another broker.sqlite.",
    ["reason"],
)
LOOP_FAILURES = Counter("hive_broker_loop_failures_total", "Background loop iterations that failed.", ["loop"])

INBOX_DEPTH = Gauge("hive_broker_inbox_depth", "Messages not yet acked, by recipient.", ["agent"])
PENDING_APPROVALS = Gauge("hive_broker_pending_approvals", "Approvals waiting for the operator.")
OPEN_QUESTIONS = Gauge("hive_broker_open_questions", "Questions not yet answered.")
PENDING_REMINDERS = Gauge("hive_broker_pending_reminders", "Reminders not yet due.")
SEARCH_LAG = Gauge(
    "hive_broker_search_lag_messages", "Newest messages not yet in the full-text index (a search indexes them first)."
)
WAITING_POLLS = Gauge("hive_broker_waiting_polls", "recv long-polls currently waiting.")

COMMIT_BATCH = Histogram(
    "hive_broker_commit_batch_size",
    "Requests (sends, acks, ...) committed together in one broker.sqlite transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
