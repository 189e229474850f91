"""promsd: an agent's announced metrics URL becomes a Prometheus target only if it
is its own loopback `/metrics` (the agent can rewrite the metrics.json it announces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hivewire import promsd

GOOD = ["http://127.0.0.1:40001/metrics", "http://[::1]:65535/metrics"]
BAD = [
    "http://10.0.0.5:9100/metrics",  # another host
    "http://evil.example:80/metrics",
    "http://localhost:40001/metrics",  # a name: resolved by Prometheus, not us
    "http://127.0.0.1:40001/admin/shutdown",  # another path
    "http://127.0.0.1:40001/metrics?x=1",
    "http://127.0.0.1:40001/metrics#f",
    "http://127.0.0.1/metrics",  # no port
    "http://127.0.0.1:0/metrics",
    "http://127.0.0.1:99999/metrics",
    "http://127.0.0.1:abc/metrics",
    "https://127.0.0.1:40001/metrics",
    "http://user:pw@127.0.0.1:40001/metrics",
    "http://127.0.0.1:40001@10.0.0.5:80/metrics",
    "http://0.0.0.0:40001/metrics",  # a wildcard bind only with HIVE_PROMSD_HOST
    "file:///etc/passwd",
    "",
    42,
]


def announce(state: Path, url: object, instance: str = "i1") -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / promsd.ANNOUNCE_FILE).write_text(json.dumps({"instance": instance, "metrics_url": url}))


@pytest.mark.parametrize("url", GOOD)
def test_loopback_metrics_urls_are_listed(tmp_path: Path, url: str) -> None:
    announce(tmp_path / "state", url)
    assert promsd.announced(tmp_path / "state", "i1") == url
    assert promsd.set_agent(tmp_path, "alice", url) == {"alice": url}


@pytest.mark.parametrize("url", BAD)
def test_other_hosts_and_paths_are_refused(tmp_path: Path, url: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_PROMSD_HOST", raising=False)
    promsd.set_agent(tmp_path, "bob", GOOD[0])
    announce(tmp_path / "state", url)
    if url == "":
        assert promsd.announced(tmp_path / "state", "i1") is None  # nothing announced
    else:
        with pytest.raises(ValueError, match="refused"):
            promsd.announced(tmp_path / "state", "i1")
        with pytest.raises(ValueError, match="refused"):
            promsd.set_agent(tmp_path, "alice", url)  # type: ignore[arg-type]
    assert promsd.read_targets(promsd.sd_path(tmp_path)) == {"bob": GOOD[0]}  # unchanged


def test_a_wildcard_bind_only_with_an_operator_chosen_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_PROMSD_HOST", "deployer")
    announce(tmp_path / "state", "http://0.0.0.0:9414/metrics")
    url = promsd.announced(tmp_path / "state", "i1")
    assert promsd.set_agent(tmp_path, "alice", url) == {"alice": "http://deployer:9414/metrics"}
    announce(tmp_path / "state", "http://10.1.2.3:9414/metrics")
    with pytest.raises(ValueError, match="refused"):
        promsd.announced(tmp_path / "state", "i1")
