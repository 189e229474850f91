"""A git repo poisoned the way an agent could: every knob that runs code runs a script that leaves a marker.

`poison(repo, marker)` sets, in `.git/config`: core.fsmonitor, core.hooksPath,
pager/editor/ssh/askpass/alternateRefs commands, a filter driver (clean,
smudge, process), a diff driver (textconv, command), diff.external,
gpg.program, uploadpack.packObjectsHook, credential.helper, a merge driver;
hooks in `.git/hooks` and in the hooksPath dir; `.git/info/attributes`
routing every path through the filter and diff drivers. `plain_git_runs_it`
proves the poison works (plain git touches the marker), so the tests that
assert the marker stays absent can fail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HOOKS = ("post-checkout", "pre-commit", "post-commit", "commit-msg", "prepare-commit-msg", "reference-transaction",
         "post-index-change", "pre-auto-gc", "post-merge", "post-rewrite", "pre-push", "fsmonitor-watchman",
         "push-to-checkout", "pre-receive", "update", "post-update")
COMMAND_KEYS = ("core.fsmonitor", "core.pager", "core.editor", "core.sshCommand", "core.askPass",
                "core.alternateRefsCommand", "filter.evil.clean", "filter.evil.smudge", "filter.evil.process",
                "diff.evil.textconv", "diff.evil.command", "diff.external", "gpg.program", "gpg.ssh.program",
                "uploadpack.packObjectsHook", "credential.helper", "merge.evil.driver", "pager.show", "pager.diff",
                "pager.log", "sequence.editor")


def script(marker: Path) -> Path:
    s = marker.parent / "evil.sh"
    s.write_text(f'#!/bin/sh\necho "ran: $0 $*" >> {marker}\ncat\n')
    s.chmod(0o755)
    return s


def poison(repo: Path, marker: Path) -> None:
    s = str(script(marker))
    cfg = repo / ".git" / "config"
    hooks_dir = repo / ".git" / "evil-hooks"
    hooks_dir.mkdir(exist_ok=True)
    for d in (repo / ".git" / "hooks", hooks_dir):
        d.mkdir(exist_ok=True)
        for h in HOOKS:
            (d / h).write_text(f"#!/bin/sh\nexec {s} hook-{h}\n")
            (d / h).chmod(0o755)

    def setc(key: str, value: str) -> None:
        subprocess.run(["git", "config", "--file", str(cfg), key, value], check=True)

    for key in COMMAND_KEYS:
        setc(key, s)
    setc("core.hooksPath", str(hooks_dir))
    setc("filter.evil.required", "true")
    setc("log.showSignature", "true")
    setc("commit.gpgSign", "true")
    setc("protocol.allow", "always")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=evil diff=evil merge=evil\n")


def plain_git_runs_it(repo: Path, marker: Path) -> bool:
    """Does unhardened git run the poison (a sanity check; removes the marker again)?"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    (repo / "agent.nix").touch()
    subprocess.run(["git", "-C", str(repo), "status"], env=env, capture_output=True)
    subprocess.run(["git", "-C", str(repo), "show", "HEAD"], env=env, capture_output=True)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    return ran
