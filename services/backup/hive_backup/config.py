"""The backup config file: what goes in, where it goes, when, and how long it stays.

It lives at `HIVE_HOME/backup/config.toml`; the first run writes a commented
default there so the operator has something to edit. Every key is optional.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
from croniter import croniter

CLASSES = ("databases", "secrets", "repos", "bulky")

DEFAULT_TOML = """\
# hive-backup configuration (docs/backup.md). Every key is optional.

# Where snapshots go: "local" (HIVE_HOME/backups, or local_dir), any absolute
# directory path (put it on another disk), "jetstream" (the NATS JetStream
# object store bucket "hive-backups"; off-box when NATS is clustered).
targets = ["local"]
# local_dir = "/var/lib/hive/backups"

# Restore every new snapshot into a scratch dir and check it (logged).
drill = true
prune_after_run = true
compress_level = 3

# age recipients (public keys) that can decrypt the secrets. With none, the
# first run generates a keypair: recipient in backup/recipients.txt, identity
# (the private key) in backup/identity.txt, mode 0600. MOVE THE IDENTITY OFF
# THIS BOX: the backup host only needs the recipient to encrypt.
recipients = []

[schedule]       # cron expressions, local time; "" disables a class
databases = "0 6,18 * * *"
secrets = "0 6,18 * * *"
repos = "0 6,18 * * *"
bulky = "0 3 * * 0"

[retention]      # grandfather-father-son, per set of classes
last = 2         # always keep the newest N (both of today's runs)
daily = 14
weekly = 8
monthly = 12

[include]        # extra globs, relative to HIVE_HOME, on top of the layout
databases = []
secrets = []
repos = []
bulky = ["sessions", "agents/*/state", "remote/*/agents/*/state"]

[scheduler]
enabled = true
catch_up = true  # on start, run a class whose last scheduled time was missed
"""


class Retention(msgspec.Struct, kw_only=True):
    last: int = 2  # the newest N, whatever their day
    daily: int = 14
    weekly: int = 8
    monthly: int = 12


class Include(msgspec.Struct, kw_only=True):
    databases: list[str] = []
    secrets: list[str] = []
    repos: list[str] = []
    bulky: list[str] = msgspec.field(default_factory=lambda: ["sessions", "agents/*/state",
                                                                              "remote/*/agents/*/state"])


class SchedulerCfg(msgspec.Struct, kw_only=True):
    enabled: bool = True
    catch_up: bool = True


def _default_schedule() -> dict[str, str]:
    return {"databases": "0 6,18 * * *", "secrets": "0 6,18 * * *", "repos": "0 6,18 * * *", "bulky": "0 3 * * 0"}


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    targets: list[str] = msgspec.field(default_factory=lambda: ["local"])
    local_dir: str = ""
    drill: bool = True
    prune_after_run: bool = True
    compress_level: int = 3
    recipients: list[str] = []
    recipients_file: str = ""
    identity_file: str = ""
    schedule: dict[str, str] = msgspec.field(default_factory=_default_schedule)
    retention: Retention = msgspec.field(default_factory=Retention)
    include: Include = msgspec.field(default_factory=Include)
    exclude: list[str] = []
    scheduler: SchedulerCfg = msgspec.field(default_factory=SchedulerCfg)
    jetstream_bucket: str = "hive-backups"

    def check(self) -> Config:
        for cls, expr in self.schedule.items():
            if cls not in CLASSES:
                raise ValueError(f"unknown backup class {cls!r} in [schedule] (known: {', '.join(CLASSES)})")
            if expr and not croniter.is_valid(expr):
                raise ValueError(f"[schedule] {cls}: invalid cron expression {expr!r}")
        if not 0 <= self.compress_level <= 9:
            raise ValueError("compress_level must be 0..9")
        for t in self.targets:
            if t not in ("local", "jetstream") and not Path(t).is_absolute():
                raise ValueError(f"target {t!r}: use 'local', 'jetstream' or an absolute directory path")
        return self

    def enabled_classes(self) -> list[str]:
        return [c for c in CLASSES if self.schedule.get(c)]


def config_path(home: Path) -> Path:
    return home / "backup" / "config.toml"


def load_config(home: Path, *, write_default: bool = True) -> Config:
    """Read `HIVE_HOME/backup/config.toml`, creating the default if absent."""
    path = config_path(home)
    if not path.exists():
        if write_default:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(DEFAULT_TOML)
        return Config().check()
    return parse_config(path.read_text(), source=str(path))


def parse_config(text: str, source: str = "config") -> Config:
    try:
        raw = tomllib.loads(text)
        cfg = msgspec.convert(raw, Config)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"{source}: {exc}") from None
    merged = _default_schedule()
    merged.update(cfg.schedule)
    cfg.schedule = merged
    return cfg.check()
