"""age keys: the service encrypts to recipients; only the operator's identity decrypts.

With no recipient configured, the first run generates a keypair: the
recipient (public) goes to `HIVE_HOME/backup/recipients.txt`, the identity
(private) to `HIVE_HOME/backup/identity.txt` with mode 0600. The operator
should move the identity off the box; encryption keeps working without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyrage
import structlog

from hive_backup.config import Config

log = structlog.get_logger("hive_backup.keys")


def recipients_path(home: Path, cfg: Config) -> Path:
    return Path(cfg.recipients_file) if cfg.recipients_file else home / "backup" / "recipients.txt"


def identity_path(home: Path, cfg: Config) -> Path:
    return Path(cfg.identity_file) if cfg.identity_file else home / "backup" / "identity.txt"


def write_private(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_recipients(home: Path, cfg: Config, *, generate: bool = True) -> list[str]:
    """The age recipients secrets are encrypted to (generating a keypair on first run)."""
    found = [r.strip() for r in cfg.recipients if r.strip()]
    rpath = recipients_path(home, cfg)
    if rpath.exists():
        found += [ln.strip() for ln in rpath.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if found:
        for r in found:
            pyrage.x25519.Recipient.from_str(r)  # raises on a malformed key
        return list(dict.fromkeys(found))
    if not generate:
        return []
    ident = pyrage.x25519.Identity.generate()
    ipath = identity_path(home, cfg)
    write_private(ipath, f"# hive backup identity: MOVE THIS FILE OFF THIS HOST\n{ident}\n")
    rpath.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rpath.write_text(f"{ident.to_public()}\n")
    log.warning("backup_keypair_generated", recipient=str(ident.to_public()), identity=str(ipath),
                advice="move the identity file off this host; restores of secrets need it")
    return [str(ident.to_public())]


def load_identity(path: str | Path) -> pyrage.x25519.Identity:
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            return pyrage.x25519.Identity.from_str(line)
    raise ValueError(f"{path}: no AGE-SECRET-KEY line")


def encrypt(data: bytes, recipients: list[str]) -> bytes:
    return bytes(pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(r) for r in recipients]))


def decrypt(data: bytes, identity: pyrage.x25519.Identity) -> bytes:
    return bytes(pyrage.decrypt(data, [identity]))
