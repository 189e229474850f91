"""Issue 21: the deployer's git never runs code from a repo an agent can write (real git, poisoned repos)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hive_deployer import archive, git, repos
from hive_deployer.layout import Layout
from hivewire import safegit
from hivewire.errors import HiveError
from tests.support import evilgit


def commit(repo: Path, files: dict[str, str], msg: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    return git.commit_all(repo, msg)


def test_every_deployer_git_path_on_a_poisoned_config_repo(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home")
    layout.home.mkdir()
    layout.make_agent_dirs("alice")
    repos.first_deploy(layout, "alice")
    cfg = layout.config("alice")
    # the agent commits a change that routes every file through its own drivers, then poisons .git
    sha = commit(cfg, {".gitattributes": "* filter=evil diff=evil merge=evil\n", "hive.env": "HIVE_X=1\n"}, "x")
    marker = tmp_path / "MARKER"
    evilgit.poison(cfg, marker)
    assert evilgit.plain_git_runs_it(cfg, marker)  # the poison is live for plain git
    (cfg / "agent.nix").write_text(repos.AGENT_NIX.format(name="alice"))

    assert repos.init_config(layout, "alice") == sha  # idempotent: reads HEAD as files
    assert repos.resolve_config_commit(layout, "alice", sha[:9]) == sha
    assert repos.propose(layout, "alice", sha, "5") == sha
    assert repos.approve(layout, "alice", "5") == sha
    tree = repos.export_tree(layout, "alice", sha, tmp_path / "tree")
    assert repos.check_tree(tree) == [] and repos.read_env(tree) == {"HIVE_X": "1"}
    assert repos.mark_deployed(layout, "alice", "5") == sha
    assert git.head(layout.applied("alice")) == sha
    repos.write_meta(layout, [repos.MetaEntry("alice", "deployed/5", sha, layout.applied("alice"))], "m", "path:/x")

    out = tmp_path / "alice.tar.gz"
    archive.export_agent(layout, "alice", {"deployed_sha": sha}, out)
    other = Layout(tmp_path / "other")
    other.home.mkdir()
    st = archive.stage(other, out)
    archive.install(other, st, "alice")
    st.discard()
    assert not marker.exists(), marker.read_text()
    # the history travelled, the poison did not
    assert git.agent_head(other.config("alice")) == sha and git.head(other.applied("alice")) == sha
    assert "evil" not in (other.config("alice") / ".git/config").read_text()
    assert not (other.config("alice") / ".git/info/attributes").exists()
    assert (other.config("alice") / "hive.env").read_text() == "HIVE_X=1\n"


def test_init_config_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home")
    layout.home.mkdir()
    layout.make_agent_dirs("bob")
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (layout.config("bob") / "agent.nix").symlink_to(victim)
    with pytest.raises(HiveError) as err:
        repos.init_config(layout, "bob")
    assert err.value.code == "bad_request"
    assert victim.read_text() == "keep\n" and not (layout.config("bob") / ".git").exists()

    # a .git the agent made itself is not adopted (git would read its config)
    layout.make_agent_dirs("carol")
    subprocess.run(["git", "init", "-q", str(layout.config("carol"))], check=True)
    with pytest.raises(HiveError) as err:
        repos.init_config(layout, "carol")
    assert err.value.code == "conflict"


def test_symlinked_git_dir_and_alternates_are_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home")
    layout.home.mkdir()
    layout.make_agent_dirs("alice")
    sha = repos.first_deploy(layout, "alice")
    cfg = layout.config("alice")
    alt = cfg / ".git/objects/info/alternates"
    alt.write_text(str(layout.applied("alice") / ".git/objects") + "\n")
    with pytest.raises(HiveError) as err:
        repos.resolve_config_commit(layout, "alice", sha)
    assert err.value.code == "bad_request" and "alternates" in err.value.message
    alt.unlink()
    (cfg / ".git").rename(cfg / "real-git")
    (cfg / ".git").symlink_to(cfg / "real-git")
    with pytest.raises(HiveError) as err:
        repos.resolve_config_commit(layout, "alice", sha)
    assert "symlink" in err.value.message


def test_tree_symlinks_do_not_read_host_files(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home")
    layout.home.mkdir()
    layout.make_agent_dirs("alice")
    repos.first_deploy(layout, "alice")
    secret = tmp_path / "secret.env"
    secret.write_text("HIVE_STOLEN=token\n")
    cfg = layout.config("alice")
    (cfg / "hive.env").unlink()
    (cfg / "hive.env").symlink_to(secret)
    (cfg / "x.nix").symlink_to(secret)
    sha = git.commit_all(cfg, "links")
    repos.propose(layout, "alice", sha, "6")
    tree = repos.export_tree(layout, "alice", sha, tmp_path / "tree")
    assert repos.read_env(tree) == {}
    assert repos.check_tree(tree) == ["x.nix: a symlink (not allowed in a config)"]


def test_hardened_argv_and_env() -> None:
    argv = safegit.argv("show", "HEAD")
    assert argv[:2] == ["git", "--no-pager"] and "safe.directory=*" not in argv
    for knob in ("core.fsmonitor=false", "core.hooksPath=/dev/null", "protocol.allow=never",
                 "core.attributesFile=/dev/null", "safe.bareRepository=explicit", "transfer.fsckObjects=true"):
        assert knob in argv
    assert "protocol.file.allow=always" not in argv and "protocol.file.allow=always" in safegit.argv("fetch",
                                                                                                      local=True)
    show = argv.index("show")
    assert argv[show + 1:show + 4] == ["--no-textconv", "--no-ext-diff", "--no-color"]
    env = safegit.env({"GIT_DIR": "/x", "GIT_EXTERNAL_DIFF": "/evil", "PATH": "/bin"})
    assert "GIT_DIR" not in env and "GIT_EXTERNAL_DIFF" not in env and env["PATH"] == "/bin"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"
