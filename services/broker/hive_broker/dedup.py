"""The client ids of recent sends: the broker's duplicate window, held in memory.

Why not a unique index: client ids are random (the harness uses `mcp-<uuid>`), so
an index over them put every send on its own leaf page, and every commit wrote one
such page per send to the WAL (measured under the 32-agent benchmark: about a third
of the broker's CPU per send went to those page writes). Like JetStream's
duplicate window, the broker instead remembers each sender's client ids for a
window (`HIVE_BROKER_DEDUP_WINDOW_S`, default 24 h, and at most
`HIVE_BROKER_DEDUP_MAX` sends, default 100,000): a retry inside it is answered
from the stored message and stores nothing.

Nothing here is trusted without the file: the map only says where to look (the
first row id and how many rows the send stored); a hit is confirmed by reading
those rows, so an entry left by a transaction that rolled back is a miss. Only write
jobs touch it (one at a time, on the broker's writer), and `load` rebuilds it from broker.sqlite at start, so a
restart (or kill -9) forgets nothing inside the window.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

CLOCK_SLACK_S = 3600.0
# (sender, client id) -> (first row id, rows stored, sent_at)
Entry = tuple[int, int, float]


class ClientIds:
    def __init__(self, window_s: float = 86400.0, max_entries: int = 100_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._trimmed_at = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def lookup(self, conn: sqlite3.Connection, sender: str, client_id: str, now: float) -> list[sqlite3.Row]:
        """The rows a send with this client id stored inside the window, or []."""
        entry = self._seen.get((sender, client_id))
        if entry is None or entry[2] < now - self.window_s:
            return []
        first, n, _ = entry
        return conn.execute(
            "SELECT id, recipient, body, sent_at FROM messages WHERE id BETWEEN ? AND ? "
            "AND sender = ? AND client_id = ? ORDER BY id",
            (first, first + n - 1, sender, client_id),
        ).fetchall()

    def remember(self, sender: str, client_id: str, first_id: int, rows: int, sent_at: float) -> None:
        key = (sender, client_id)
        self._seen.pop(key, None)  # a re-send after a rolled-back one moves to the newest end
        self._seen[key] = (first_id, rows, sent_at)
        self._trim(sent_at)

    def _trim(self, now: float) -> None:
        # runs per send: a full window drops its oldest entry (remember added one); expiry
        # by time at most once a second (lookup checks the window itself)
        if now - self._trimmed_at < 1.0:
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return
        self._trimmed_at = now
        cutoff = now - self.window_s
        while self._seen:
            _, (_, _, at) = next(iter(self._seen.items()))
            if len(self._seen) <= self.max_entries and at >= cutoff:
                return
            self._seen.popitem(last=False)

    def load(self, conn: sqlite3.Connection, now: float) -> int:
        """Rebuild from the newest rows of the file; returns how many sends it holds."""
        self._seen.clear()
        found: dict[tuple[str, str], list[float]] = {}  # key -> [first id, rows, sent_at], newest first
        cutoff = now - self.window_s
        # every row, newest first, so that the time check stops the scan even where few carry a client id
        cur = conn.execute("SELECT id, sender, client_id, sent_at FROM messages ORDER BY id DESC")
        for mid, sender, client_id, sent_at in cur:
            if sent_at < cutoff:  # ids follow time, bar a clock stepped back: allow an hour of that
                if sent_at < cutoff - CLOCK_SLACK_S:
                    break
                continue
            if client_id is None:
                continue
            key = (sender, client_id)
            hit = found.get(key)
            if hit is None:
                if len(found) >= self.max_entries:
                    break
                found[key] = [mid, 1, sent_at]
            elif hit[0] == mid + 1:  # a broadcast's rows are consecutive: extend downwards
                hit[0], hit[1] = mid, hit[1] + 1
        for key in reversed(found):  # oldest first, as remember() keeps them
            first, n, at = found[key]
            self._seen[key] = (int(first), int(n), at)
        return len(self._seen)
