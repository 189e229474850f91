"""What approving an apply_commit deploys: the full diff from the deployed commit to the proposed one.

A deploy applies the proposed commit's whole tree, so the view is
`git diff <deployed> <proposed>` (from the empty tree when nothing is
deployed yet) with the list of every commit in between, not `git show` of
one commit (a harmful commit under a harmless one would hide). The deployed
sha comes from the deployer (`AgentInfo.deployed_sha`). Git runs hardened
(`hivewire.safegit`) in a shadow repo that borrows the objects of the
agent's config repo and of `applied/<name>`: the agent-written repo's
config, hooks and attributes never take effect (no textconv, no external
diff). Past `DIFF_MAX` bytes the text is cut and the approval needs an
explicit `confirm_large`; so does a diff that could not be made.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import structlog

from hive_dashboard.schemas import ApprovalView
from hivewire import safegit
from hivewire.errors import HiveError
from hivewire.names import is_agent_name
from hivewire.settings import Settings

log = structlog.get_logger("hive_dashboard.approvals")
SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
DIFF_MAX = 64 * 1024
COUNT_MAX = 64 * 1024 * 1024  # past this the size is reported as "more than"
TIMEOUT_S = 10.0
_cache: dict[tuple[str, str, str | None], DeployDiff] = {}


@dataclass(frozen=True)
class DeployDiff:
    text: str | None  # None: no diff could be made (see error)
    base: str | None  # the deployed sha it is relative to (None: the empty tree)
    total_bytes: int = 0
    truncated: bool = False
    error: str | None = None

    @property
    def needs_confirm(self) -> bool:
        return self.text is None or self.truncated



def refusal(view: ApprovalView) -> str:
    """Why approving `view` without confirm_large is refused."""
    if view.diff is None:
        return (f"the diff of this deploy could not be shown ({view.diff_error}); approving deploys the whole "
                "proposed tree: review it elsewhere and approve with confirm_large=true")
    size = f"more than {COUNT_MAX}" if view.diff_bytes > COUNT_MAX else str(view.diff_bytes)
    return (f"the diff of this deploy is {size} bytes and the view shows only the first {DIFF_MAX}: "
            "approving deploys all of it; review it and approve with confirm_large=true")


def _object_dirs(settings: Settings, agent: str) -> list[Path]:
    dirs = [safegit.agent_git_dir(settings.agent_dir(agent) / "config") / "objects"]
    applied = settings.home / "applied" / agent / ".git" / "objects"
    if applied.is_dir() and not applied.is_symlink():
        dirs.append(applied)
    return dirs


async def _git(git_dir: Path, *args: str, limit: int) -> tuple[int, bytes, int]:
    """(returncode, the first `limit`+1 bytes of stdout, total stdout bytes up to COUNT_MAX+1)."""
    proc = await asyncio.create_subprocess_exec(
        *safegit.argv(*args, git_dir=git_dir), env=safegit.env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    kept, total = bytearray(), 0
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while chunk := await proc.stdout.read(65536):
                total += len(chunk)
                if len(kept) <= limit:
                    kept += chunk[: limit + 1 - len(kept)]
                if total > COUNT_MAX:
                    break
            if total <= COUNT_MAX:
                await proc.wait()
    except TimeoutError:
        raise HiveError("timeout", f"git {args[0]} took more than {TIMEOUT_S:.0f} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rc = 0 if total > COUNT_MAX else (proc.returncode or 0)
    return rc, bytes(kept), total


async def _rev(git_dir: Path, ref: str) -> str | None:
    rc, out, _ = await _git(git_dir, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", limit=100)
    sha = out.decode(errors="replace").strip()
    return sha if rc == 0 and safegit.SHA1_RE.match(sha) else None


async def deploy_diff(settings: Settings, agent: str, commit_ref: str, deployed_sha: str | None) -> DeployDiff:
    """The diff an approval of `commit_ref` would deploy over `deployed_sha` (cached per pair)."""
    base = deployed_sha if deployed_sha and safegit.SHA1_RE.match(deployed_sha) else None
    if not is_agent_name(agent) or not SHA_RE.match(commit_ref):
        return DeployDiff(None, base, error="not a valid agent and commit")
    key = (agent, commit_ref, base)
    if key in _cache:
        return _cache[key]
    try:
        dirs = _object_dirs(settings, agent)
        with safegit.shadow(*dirs) as sh:
            view = await _diff_in(sh, commit_ref, base)
    except HiveError as exc:
        log.warning("approval_diff_failed", agent=agent, commit=commit_ref, error=exc.message)
        return DeployDiff(None, base, error=exc.message)
    if len(_cache) > 512:
        _cache.clear()
    _cache[key] = view
    return view


async def _diff_in(sh: Path, commit_ref: str, base: str | None) -> DeployDiff:
    sha = await _rev(sh, commit_ref)
    if sha is None:
        return DeployDiff(None, base, error=f"commit {commit_ref} is not in the agent's config repo")
    if base is not None and await _rev(sh, base) is None:
        return DeployDiff(None, base, error=f"the deployed commit {base[:12]} is not found")
    rng = [f"{base}..{sha}"] if base else [sha]
    rc, log_out, log_total = await _git(sh, "log", "--format=%h %s", *rng, "--", limit=DIFF_MAX)
    if rc != 0:
        return DeployDiff(None, base, error="git log failed")
    over = f"over the deployed {base[:12]}" if base else "over nothing (first deploy: the whole tree)"
    head = (f"deploys {sha[:12]} {over}\ncommits:\n"
            + log_out[:DIFF_MAX].decode(errors="replace") + ("…\n" if log_total > DIFF_MAX else "") + "\n")
    left = max(DIFF_MAX - len(head.encode()), 0)
    rc, out, total = await _git(sh, "diff", "--stat", "--patch", base or safegit.EMPTY_TREE, sha, "--", limit=left)
    if rc != 0:
        return DeployDiff(None, base, error="git diff failed")
    truncated = total > left or log_total > DIFF_MAX
    text = head + out[:left].decode(errors="replace")
    if truncated:
        text += f"\n… (diff truncated: {total} bytes, the view shows {DIFF_MAX}; approving deploys all of it)"
    return DeployDiff(text, base, total_bytes=len(head.encode()) + total, truncated=truncated)
