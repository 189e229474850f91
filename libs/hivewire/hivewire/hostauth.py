"""NATS identities of agent hosts and their one-time join tokens (issue 26).

An agent host's `hive-agenthost` connects to the hive's NATS (the hub's
server or the core cluster) as `host_<name>`: it may answer requests on
`hive.host.<name>.>` and publish only its own reports under
`hive.host.<name>.up.>` (heartbeats, credential requests), plus its own
`$SRV` discovery subjects. It cannot speak for an agent: each harness on the
host connects as its own `agent_<agent>` user, issued by the hub when the
agent is placed there and fetched by the agent host over its private inbox.

Join tokens: `new_token()` returns the secret shown once to the operator;
the hub keeps only `token_hash()` (sha256) with an expiry, and marks it used
at the first successful join (`check_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any

from hivewire import config, natsauth, subjects
from hivewire.names import validate_agent_name
from hivewire.natsauth import policy, store
from hivewire.wire import ops
from hivewire.wire.op import Caller, Service

HOST_PREFIX = "host_"


def host_user(name: str) -> str:
    return f"{HOST_PREFIX}{validate_agent_name(name, allow_reserved=True)}"


def host_permissions(name: str) -> dict[str, Any]:
    """Only its own subjects: answer `hive.host.<name>.*`, report under `.up.` (the contract's
    ops of `Caller.HOST` and `Service.AGENTHOST` with its name, hivewire.wire.ops)."""
    name = validate_agent_name(name, allow_reserved=True)
    user = host_user(name)
    pub, sub = ops.rights({Caller.HOST}, Service.AGENTHOST, name)
    # Its replies to the deployer's requests go to the deployer's inbox explicitly: a reload (any agent
    # issued or revoked) forgets what `allow_responses` granted for requests in flight (natsauth).
    pub = [*pub, *(f"{natsauth.inbox_prefix(natsauth.service_user(s))}.>" for s in ("deployer", "backup"))]
    sub = [*sub, f"{subjects.SRV}.*.{subjects.AGENTHOST_SERVICE}.{name}", f"{natsauth.inbox_prefix(user)}.>"]
    return policy.perms(pub, sub, pub_deny=["hive.operator.>", "hive.broker.>", "hive.agent.>", "$JS.>",
                                            "$SYS.>", "$O.>", "$KV.>"])


def issue_host(home: Path, name: str, *, reload: bool = True) -> str:
    """Add (or keep) the host's NATS user; returns its credentials file's text ('' when auth is off)."""
    if not natsauth.enabled(home):
        return ""
    user = host_user(name)
    with store.locked(home):
        users = store.load_users(home)
        changed = user not in users
        if changed:
            users[user] = {"password": store.new_password()}
            store.render_all(home, users)
        password = users[user]["password"]
    if changed and reload:
        natsauth.reload_server(home)
    return natsauth.creds_text(user, password)


def revoke_host(home: Path, name: str, *, reload: bool = True) -> bool:
    """Drop the host's user; the reload disconnects its agent host at once. True if it existed."""
    if not natsauth.enabled(home):
        return False
    user = host_user(name)
    with store.locked(home):
        users = store.load_users(home)
        if user not in users:
            return False
        del users[user]
        store.render_all(home, users)
    if reload:
        natsauth.reload_server(home)
    return True


def agent_creds_text(home: Path, agent: str) -> str:
    """An agent's credentials file text (issuing the user if new), for a harness on another host."""
    env = natsauth.issue_agent(home, agent)
    path = config.NATS_CREDS.get(env)
    return Path(path).read_text() if path else ""


# --- join tokens ---------------------------------------------------------------
def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_token(record: dict[str, Any], token: str, now: float | None = None) -> str | None:
    """Why `token` cannot join with this host record (None: it can)."""
    now = time.time() if now is None else now
    want = record.get("token_hash")
    if not want or not hmac.compare_digest(want, token_hash(token)):
        return "unknown token"
    if record.get("token_used"):
        return "token already used"
    if now > float(record.get("token_expires_at") or 0):
        return "token expired"
    return None
