"""The client side: how a process finds its NATS identity (`resolve_credentials`) and
the options nats-py connects with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivewire import config
from hivewire.natsauth.paths import creds_path
from hivewire.natsauth.policy import OPERATOR_USER, inbox_prefix

# The env vars that carry a process's NATS identity (`resolve_credentials`): a
# parent must not pass its own down to a child that runs as someone else.
IDENTITY_ENV = ("HIVE_NATS_CREDS", "HIVE_NATS_USER", "HIVE_NATS_PASSWORD", "HIVE_NATS_INBOX_PREFIX")


@dataclass
class Credentials:
    user: str | None = None
    password: str | None = None
    inbox_prefix: str | None = None
    jwt_creds_file: str | None = None  # a NATS (decentralized auth) .creds file

    def connect_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.jwt_creds_file:
            opts["user_credentials"] = self.jwt_creds_file
        if self.user:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        if self.inbox_prefix:
            opts["inbox_prefix"] = self.inbox_prefix
        return opts


def parse_env_file(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        out[k.strip().removeprefix("export ").strip()] = v.strip().strip('"').strip("'")
    return out


def resolve_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    """How a process finds its NATS identity, first match wins:

    1. `HIVE_NATS_CREDS=<file>`: a creds file written here, or a NATS JWT
       `.creds` file (`none` disables every fallback);
    2. `HIVE_NATS_USER` + `HIVE_NATS_PASSWORD`;
    3. the operator's file `$HIVE_HOME/nats/creds/operator.env` when it exists
       and is readable (whoever can read it is the operator anyway), so `hive
       ...` commands work against an auth-on `hive up` without extra setup;
       never for an agent's process (`HIVE_AGENT` set).
    `HIVE_NATS_INBOX_PREFIX` overrides the inbox prefix (default `_INBOX_<user>`).
    """
    e = os.environ if env is None else env
    path = config.NATS_CREDS.get(e) or ""
    if path.lower() == "none":
        return None
    own_prefix = config.NATS_INBOX_PREFIX.get(e)  # the environment's, over a file's
    values: Mapping[str, str] = e  # the file read below, in the same variables
    if path:
        text = Path(path).expanduser().read_text()
        if "BEGIN NATS USER JWT" in text:
            return Credentials(jwt_creds_file=path, inbox_prefix=own_prefix)
        values = parse_env_file(text)
    elif not config.NATS_USER.get(e) and not config.AGENT.get(e):  # an agent never falls back
        op = creds_path(config.home(e), OPERATOR_USER)
        if not os.access(op, os.R_OK):
            return None
        values = parse_env_file(op.read_text())
    user = config.NATS_USER.get(values)
    if not user:
        return None
    return Credentials(
        user=user,
        password=config.NATS_PASSWORD.get(values) or "",
        inbox_prefix=own_prefix or config.NATS_INBOX_PREFIX.get(values) or inbox_prefix(user),
    )
