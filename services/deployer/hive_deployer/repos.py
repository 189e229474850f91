"""The three kinds of git repos (config, applied, meta), as plain functions over real git.

- `agents/<name>/config`: the proposed config; the manager edits it.
- `applied/<name>`: deployer only; `main` is what runs, tags carry the
  approval history (proposal/approved/building/deployed/failed/denied).
- `meta`: one swarm-wide flake (one input + one nixosConfigurations.<name>
  per agent); its git log is the deploy audit trail.

No NATS and no processes here: the approval flow is testable by calling
these directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hive_deployer import git, safefs
from hive_deployer.layout import Layout, check_name
from hivewire import safegit
from hivewire.errors import HiveError
from hivewire.names import MANAGER

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
TAG_KINDS = ("proposal", "approved", "building", "deployed", "failed", "denied")
NIX = shutil.which("nix-instantiate")

AGENT_NIX = """{{ config, lib, pkgs, ... }}:
{{
  # Hive agent `{name}`. The manager edits this file in agents/{name}/config;
  # changes reach the agent only through an approved apply_commit.
  hive.agent.name = "{name}";
  hive.agent.model = "haiku";
}}
"""

FLAKE_NIX = """{{
  description = "Hive agent {name} (module-only flake; the meta flake builds it)";
  outputs = {{ self }}: {{
    nixosModules.default = import ./agent.nix;
  }};
}}
"""

HIVE_ENV = """# KEY=VALUE lines passed to the agent's harness by the process/bwrap/podman runtimes.
HIVE_AGENT_PROFILE=default
"""


def deploy_id(raw: str) -> str:
    """A tag-safe id (approval ids come from the broker)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip(".-")
    if not clean:
        raise HiveError("bad_request", f"unusable deploy id {raw!r}")
    return clean[:64]


# --- config ---------------------------------------------------------------------
TEMPLATE = (("agent.nix", AGENT_NIX), ("flake.nix", FLAKE_NIX), ("hive.env", HIVE_ENV))


def init_config(layout: Layout, name: str) -> str:
    """Seed a new agent's config repo from the template (idempotent); returns HEAD.

    The config dir is agent-writable, so the first commit is made in a temp
    repo of ours (plain files already there, symlinks and devices left out, are
    kept) and its .git moved in; git never opens a .git an agent made.
    """
    repo = layout.config(check_name(name, new=True))
    if os.path.lexists(repo / ".git"):
        existing = git.agent_head(repo)
        if existing:
            return existing
        raise HiveError("conflict", f"agents/{name}/config/.git exists but has no commit; remove it to re-seed")
    repo.mkdir(parents=True, exist_ok=True)
    if repo.is_symlink():
        raise HiveError("bad_request", f"agents/{name}/config is a symlink")
    with tempfile.TemporaryDirectory(prefix=".hive-init-config-", dir=layout.home) as tmp:
        t = Path(tmp) / "repo"
        safefs.copy_tree(repo, t)
        for fname, text in TEMPLATE:
            f = t / fname
            f.unlink(missing_ok=True)
            f.write_text(text.format(name=name))
        git.init(t)
        sha = git.commit_all(t, f"init_config {name} from the hive template")
        for fname, _ in TEMPLATE:
            try:
                fd = os.open(repo / fname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise HiveError("bad_request", f"agents/{name}/config/{fname}: {exc.strerror}") from None
            with os.fdopen(fd, "w") as out:
                out.write((t / fname).read_text())
        os.rename(t / ".git", repo / ".git")
    return sha


def resolve_config_commit(layout: Layout, name: str, commit_ref: str) -> str:
    if not isinstance(commit_ref, str) or not SHA_RE.fullmatch(commit_ref):
        raise HiveError("bad_request", "commit_ref must be a 7-40 hex sha")
    sha = git.agent_rev(layout.config(name), commit_ref)
    if sha is None:
        raise HiveError("not_found", f"commit {commit_ref} is not in agents/{name}/config")
    return sha


# --- applied ----------------------------------------------------------------------
def _fetch(layout: Layout, name: str, sha: str) -> None:
    applied = layout.applied(name)
    git.init(applied)
    if git.rev(applied, sha):
        return
    git.fetch_from_agent(applied, layout.config(name), sha)
    if not git.rev(applied, sha):
        raise HiveError("not_found", f"commit {sha} could not be copied into applied/{name}")


def propose(layout: Layout, name: str, commit_ref: str, did: str) -> str:
    """Step 1: copy the commit into applied/<name> and tag proposal/<id>; returns the full sha."""
    did = deploy_id(did)
    sha = resolve_config_commit(layout, name, commit_ref)
    _fetch(layout, name, sha)
    existing = git.rev(layout.applied(name), f"refs/tags/proposal/{did}")
    if existing and existing != sha:
        raise HiveError("conflict", f"proposal/{did} already names another commit")
    git.tag(layout.applied(name), f"proposal/{did}", sha, message=f"proposal {did} for {name}: {sha}")
    return sha


def proposal_sha(layout: Layout, name: str, did: str) -> str | None:
    return git.rev(layout.applied(name), f"refs/tags/proposal/{deploy_id(did)}")


def tag_stage(layout: Layout, name: str, did: str, stage: str, message: str | None = None) -> None:
    if stage not in TAG_KINDS:
        raise ValueError(stage)
    did = deploy_id(did)
    sha = proposal_sha(layout, name, did)
    if sha is None:
        raise HiveError("not_found", f"no proposal/{did} in applied/{name}")
    git.tag(layout.applied(name), f"{stage}/{did}", sha, message=message or f"{stage} {did}")


def stages(layout: Layout, name: str, did: str) -> list[str]:
    did = deploy_id(did)
    repo = layout.applied(name)
    if not git.is_repo(repo):
        return []
    have = set(git.tags(repo, f"*/{did}"))
    return [k for k in TAG_KINDS if f"{k}/{did}" in have]


def deny(layout: Layout, name: str, did: str, note: str | None) -> None:
    tag_stage(layout, name, did, "denied", f"denied: {note or '(no note)'}")


def approve(layout: Layout, name: str, did: str) -> str:
    """Step 2a: tag approved/<id> and building/<id>; returns the sha to build."""
    tag_stage(layout, name, did, "approved")
    tag_stage(layout, name, did, "building")
    sha = proposal_sha(layout, name, did)
    assert sha is not None
    return sha


def fail(layout: Layout, name: str, did: str, error: str) -> None:
    tag_stage(layout, name, did, "failed", f"failed: {error}")


def set_applied(layout: Layout, name: str, sha: str) -> None:
    """Move applied/<name> main (and its working tree) to `sha`."""
    git.git(layout.applied(name), "checkout", "-q", "-B", "main", sha)
    git.git(layout.applied(name), "reset", "-q", "--hard", sha)


def mark_deployed(layout: Layout, name: str, did: str) -> str:
    sha = proposal_sha(layout, name, did)
    if sha is None:
        raise HiveError("not_found", f"no proposal/{did}")
    set_applied(layout, name, sha)
    tag_stage(layout, name, did, "deployed")
    return sha


def first_deploy(layout: Layout, name: str, did: str = "0") -> str:
    """A new agent: its config HEAD goes straight to applied (the spawn itself was the approval)."""
    sha = init_config(layout, name)
    propose(layout, name, sha, did)
    approve(layout, name, did)
    return mark_deployed(layout, name, did)


# What a config may not override: who the agent is, where it talks and where its state lives.
PROTECTED_ENV = frozenset({"HIVE_AGENT", "HIVE_HOME", "HIVE_NATS_URL", "HIVE_EVENTS_DB", "HIVE_MODEL_FILE",
                           "HIVE_DEPLOYED_REV", "CLAUDE_CONFIG_DIR"})


def read_env(tree: Path) -> dict[str, str]:
    """`hive.env` of a config tree: KEY=VALUE lines, comments and junk ignored."""
    env: dict[str, str] = {}
    f = tree / "hive.env"
    if f.is_symlink() or not f.is_file():  # a link in the tree must not read a host file into the env
        return env
    for line in f.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", k.strip()) and k.strip() not in PROTECTED_ENV:
            env[k.strip()] = v.strip()
    return env


def export_tree(layout: Layout, name: str, sha: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    proc = safegit.run("archive", "--format=tar", sha, cwd=layout.applied(name), text=False)
    if proc.returncode != 0:
        raise git.GitError(f"git archive {sha[:12]} in applied/{name} failed")
    subprocess.run(["tar", "-x", "--no-same-owner", "-C", str(dest)], input=proc.stdout, check=True,
                   capture_output=True)
    return dest


# --- nix ----------------------------------------------------------------------------
def nix_parse(path: Path) -> str | None:
    """None when `nix-instantiate --parse` accepts the file, else its error."""
    if NIX is None:
        return None
    proc = subprocess.run([NIX, "--parse", str(path)], capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else (proc.stderr.strip() or "nix-instantiate --parse failed")


def check_tree(tree: Path) -> list[str]:
    """Every .nix file of a config tree must parse; returns the errors."""
    errors = []
    for f in sorted(tree.rglob("*.nix")):
        if f.is_symlink():
            errors.append(f"{f.relative_to(tree)}: a symlink (not allowed in a config)")
            continue
        err = nix_parse(f)
        if err:
            errors.append(f"{f.relative_to(tree)}: {err}")
    return errors


# --- meta ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetaEntry:
    name: str
    tag: str
    sha: str
    applied: Path


def _nix_str(s: str) -> str:
    return json.dumps(s).replace("${", "\\${")


def render_meta(entries: list[MetaEntry], base_flake: str = "path:/etc/hive/nix", system: str = "x86_64-linux") -> str:
    """The swarm-wide flake: one input and one nixosConfigurations.<name> per agent."""
    entries = sorted(entries, key=lambda e: e.name)
    lines = [
        "# Rendered by hive-deployer. Do not edit: every deploy rewrites it.",
        "{",
        '  description = "Hive swarm deploy flake";',
        "  inputs = {",
        '    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";',
        f"    hive.url = {_nix_str(base_flake)};",
    ]
    for e in entries:
        url = f"git+file://{e.applied}?ref=refs/tags/{e.tag}&rev={e.sha}"
        lines.append(f'    "agent-{check_name(e.name)}".url = {_nix_str(url)};')
    lines += [
        "  };",
        "  outputs = { self, nixpkgs, hive, ... }@inputs: {",
        "    nixosConfigurations = {",
    ]
    for e in entries:
        base = "managerBase" if e.name == MANAGER else "agentBase"
        lines += [
            f"      {e.name} = nixpkgs.lib.nixosSystem {{",
            f"        system = {_nix_str(system)};",
            "        modules = [",
            f"          hive.nixosModules.{base}",
            f'          inputs."agent-{e.name}".nixosModules.default',
            f"          {{ hive.agent.name = {_nix_str(e.name)}; hive.agent.deployed = {_nix_str(e.tag)}; }}",
            "        ];",
            "      };",
        ]
    lines += ["    };", "  };", "}", ""]
    return "\n".join(lines)


def write_meta(layout: Layout, entries: list[MetaEntry], message: str, base_flake: str) -> str:
    """Render flake.nix + deployed.json into meta and commit (an empty diff still commits: audit trail)."""
    repo = layout.meta
    git.init(repo)
    text = render_meta(entries, base_flake)
    (repo / "flake.nix").write_text(text)
    pins = {e.name: {"tag": e.tag, "rev": e.sha} for e in sorted(entries, key=lambda e: e.name)}
    (repo / "deployed.json").write_text(json.dumps(pins, indent=2) + "\n")
    return git.commit_all(repo, message, allow_empty=True)


def check_meta(entries: list[MetaEntry], base_flake: str) -> str | None:
    """Parse a candidate meta flake before anything is changed."""
    with tempfile.TemporaryDirectory(prefix="hive-meta-") as tmp:
        f = Path(tmp) / "flake.nix"
        f.write_text(render_meta(entries, base_flake))
        return nix_parse(f)
