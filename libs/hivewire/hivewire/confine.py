"""Can this host confine an agent? One check, shared by the deployer (at spawn) and the harness."""

from __future__ import annotations

import subprocess

FIX_BWRAP = ("install bubblewrap (Debian: apt-get install bubblewrap) and allow unprivileged user namespaces "
             "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0), or run unconfined "
             "on purpose with HIVE_SANDBOX=none and HIVE_ALLOW_UNCONFINED=1")


def bwrap_error(binary: str | None) -> str | None:
    """Why bwrap cannot confine here (None when it can): the flags Hive uses, tried once."""
    if not binary:
        return "bubblewrap (bwrap) is not installed"
    try:
        proc = subprocess.run([binary, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
                               "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"],
                              capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if proc.returncode != 0:
        return f"bwrap cannot confine here: {proc.stderr.strip() or f'exit {proc.returncode}'}"
    return None
