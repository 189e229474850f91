"""Issue 21: an approval shows exactly what deploys (the full diff from the deployed commit), hardened git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from litestar.testing import AsyncTestClient

from hive_dashboard import approvals
from hivewire.settings import Settings
from tests.dashboard.conftest import Stack, add_approval
from tests.support import evilgit

GIT_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_AUTHOR_NAME": "m",
           "GIT_AUTHOR_EMAIL": "m@hive", "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@hive"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], msg: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", msg)
    return git(repo, "rev-parse", "HEAD")


def agent_repo(home: Path, agent: str) -> Path:
    repo = home / "agents" / agent / "config"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    return repo


async def test_a_harmful_commit_under_a_harmless_one_is_shown(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    repo = agent_repo(tmp_path, "carol")
    deployed = commit(repo, {"agent.nix": "{ model = \"haiku\"; }\n"}, "initial")
    commit(repo, {"hive.env": "HIVE_EXFIL=https://evil.example\n"}, "tidy whitespace")
    top = commit(repo, {"README.md": "docs\n"}, "update the readme")

    d = await approvals.deploy_diff(settings, "carol", top[:10], deployed)
    assert d.text is not None and not d.truncated and not d.needs_confirm and d.base == deployed
    assert "+HIVE_EXFIL=https://evil.example" in d.text and "+docs" in d.text
    assert "tidy whitespace" in d.text and "update the readme" in d.text
    assert "initial" not in d.text.split("commits:")[1]  # the deployed commit itself is not re-listed
    # nothing deployed yet: the whole tree, from the empty tree
    first = await approvals.deploy_diff(settings, "carol", top, None)
    assert first.text is not None and '+{ model = "haiku"; }' in first.text and first.base is None
    # a deployed commit the dashboard cannot find, or an unknown commit: no diff, confirmation required
    lost = await approvals.deploy_diff(settings, "carol", top, "f" * 40)
    assert lost.text is None and lost.needs_confirm and "not found" in (lost.error or "")
    assert (await approvals.deploy_diff(settings, "carol", "abcdef0", None)).needs_confirm


async def test_diff_view_runs_no_code_of_a_poisoned_repo(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    repo = agent_repo(tmp_path, "dave")
    base = commit(repo, {"agent.nix": "{ }\n", ".gitattributes": "* diff=evil filter=evil\n"}, "one")
    top = commit(repo, {"agent.nix": "{ x = 1; }\n"}, "two")
    marker = tmp_path / "MARKER"
    evilgit.poison(repo, marker)
    assert evilgit.plain_git_runs_it(repo, marker)
    d = await approvals.deploy_diff(settings, "dave", top, base)
    assert d.text is not None and "+{ x = 1; }" in d.text
    assert not marker.exists()


async def test_a_too_large_diff_needs_an_explicit_confirmation(authed: AsyncTestClient, stack: Stack,  # type: ignore[type-arg]
                                                                hive_home: Path) -> None:
    repo = hive_home / "agents" / "manager" / "config"
    big = commit(repo, {"blob.nix": "".join(f"# line {i} of a long generated file\n" for i in range(5000))},
                 "a huge change")
    big_id = await add_approval(stack, big)
    ov = (await authed.get("/api/overview")).json()
    view = next(v for v in ov["approvals"] if v["approval"]["approval_id"] == big_id)
    assert view["diff_truncated"] is True and view["confirm_required"] is True
    assert view["diff_bytes"] > approvals.DIFF_MAX and "diff truncated" in view["diff"]
    assert len(view["diff"].encode()) < approvals.DIFF_MAX + 1000
    small_id = stack.ids["approval"]
    small = next(v for v in ov["approvals"] if v["approval"]["approval_id"] == small_id)
    assert small["confirm_required"] is False and small["diff_truncated"] is False

    url = f"/api/approvals/{big_id}/resolve"
    r = await authed.post(url, json={"decision": "approve"})
    assert r.status_code == 400 and "confirm_large" in r.json()["error"]["message"], r.text
    assert stack.store.resolved() == []  # the broker never saw it
    denied_ok = await authed.post(f"/api/approvals/{small_id}/resolve", json={"decision": "approve"})
    assert denied_ok.status_code == 201, denied_ok.text  # a fully shown diff needs no confirmation
    r = await authed.post(url, json={"decision": "approve", "confirm_large": True})
    assert r.status_code == 201, r.text
    assert [x[0] for x in stack.store.resolved()] == [small_id, big_id]
