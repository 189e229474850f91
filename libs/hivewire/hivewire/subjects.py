"""Helpers that build Hive's NATS subjects.

What each subject is (its types, who may call it, who answers) is its op in
`hivewire.wire.ops`, the registry services serve from and clients call through
(`HiveClient.request(op, ...)`); every subject built here is one of those
(tests/lib/test_wire_ops.py). No subject string is spelled out anywhere else.
"""

from __future__ import annotations

from hivewire.names import validate_agent_name

ROOT = "hive"
ALL = "hive.>"

# --- broker -----------------------------------------------------------------
BROKER_VERBS = (
    "send",
    "recv",
    "ack",
    "ask",
    "answer",
    "loose_ends",
    "cancel_loose_end",
    "remind",
    "approve",
    "counts",
    "spend",
)
BROKER_CHANGED = "hive.broker.changed"


def broker(agent: str, verb: str) -> str:
    """`hive.broker.<agent>.<verb>`: an agent's request to the broker."""
    if verb not in BROKER_VERBS:
        raise ValueError(f"unknown broker verb {verb!r}")
    return f"hive.broker.{validate_agent_name(agent, allow_reserved=True)}.{verb}"


def broker_pattern(verb: str) -> str:
    """The wildcard the broker listens on for one verb."""
    if verb not in BROKER_VERBS:
        raise ValueError(f"unknown broker verb {verb!r}")
    return f"hive.broker.*.{verb}"


BROKER_REGISTRY_VERBS = ("upsert", "remove", "list")


def broker_registry(verb: str) -> str:
    """`hive.broker._registry.<verb>`: the deployer tells the broker which agents exist.

    `_registry` can never be an agent name, so no agent's `hive.broker.<agent>.>`
    permission reaches these subjects.
    """
    if verb not in BROKER_REGISTRY_VERBS:
        raise ValueError(f"unknown broker registry verb {verb!r}")
    return f"hive.broker._registry.{verb}"


def operator(area: str, verb: str) -> str:
    """`hive.operator.<area>.<verb>`, e.g. ("approvals", "list")."""
    return f"hive.operator.{area}.{verb}"


OPERATOR_SUBJECTS = (
    ("approvals", "list"),
    ("approvals", "resolve"),
    ("questions", "list"),
    ("questions", "answer"),
    ("messages", "list"),
    ("messages", "search"),
    ("ledger", "costs"),
    ("ledger", "budget_set"),
    ("ledger", "budget_show"),
    ("ledger", "budget_clear"),
)


# --- agents (harness) -------------------------------------------------------
AGENT_CTL_VERBS = ("state", "history", "model", "compact", "new_session", "cancel", "prompt", "login", "resume")


def agent(agent_name: str, leaf: str) -> str:
    return f"hive.agent.{validate_agent_name(agent_name, allow_reserved=True)}.{leaf}"


def wake(agent_name: str) -> str:
    return agent(agent_name, "wake")


def events(agent_name: str) -> str:
    return agent(agent_name, "events")


def turns(agent_name: str) -> str:
    return agent(agent_name, "turns")


def ledger_turn(agent_name: str) -> str:
    """`hive.agent.<name>.ledger`: the harness's durable copy of each TurnStats row, for the
    ledger (captured by the LEDGER_STREAM JetStream stream, Nats-Msg-Id = turn id)."""
    return agent(agent_name, "ledger")


def presence(agent_name: str) -> str:
    return agent(agent_name, "presence")


def typing(agent_name: str) -> str:
    """Partial assistant text as it streams (`wire.agent.Typing`): coalesced, never stored."""
    return agent(agent_name, "typing")


def ctl(agent_name: str, verb: str) -> str:
    if verb not in AGENT_CTL_VERBS:
        raise ValueError(f"unknown ctl verb {verb!r}")
    return agent(agent_name, f"ctl.{verb}")


def agent_pattern(leaf: str) -> str:
    """Every agent's `leaf`, e.g. `hive.agent.*.presence`."""
    return f"hive.agent.*.{leaf}"


# --- cost ledger and budgets (owned by the broker process: hive_broker.ledger) --------
LEDGER_STREAM = "HIVE_LEDGER"  # the JetStream stream of turn rows
LEDGER_CONSUMER = "ledger"  # its durable pull consumer
SESSION_LEDGER = "hive.session.ledger"  # the deployer's turn row for a finished session
LEDGER_STREAM_SUBJECTS = ("hive.agent.*.ledger", SESSION_LEDGER)
LEDGER_VERBS = ("costs", "budget_set", "budget_show", "budget_clear")


def ledger(verb: str) -> str:
    """`hive.operator.ledger.<verb>`: operator queries and budget changes."""
    if verb not in LEDGER_VERBS:
        raise ValueError(f"unknown ledger verb {verb!r}")
    return operator("ledger", verb)


# --- deployer and sessions --------------------------------------------------
DEPLOYER_VERBS = (
    "list",
    "spawn",
    "destroy",
    "revive",
    "start",
    "stop",
    "restart",
    "kill",
    "rebuild",
    "export",
    "import",
    "init_config",
    "propose",
    "approve",
    "deny",
    "history",
    "turn_stats",
)
SESSION_VERBS = ("create", "start", "status", "get", "list", "output_dir", "log", "cleanup")


def deployer(verb: str) -> str:
    if verb not in DEPLOYER_VERBS:
        raise ValueError(f"unknown deployer verb {verb!r}")
    return f"hive.deployer.{verb}"


def deployer_state(agent_name: str) -> str:
    return f"hive.deployer.state.{validate_agent_name(agent_name, allow_reserved=True)}"


DEPLOYER_STATE_ALL = "hive.deployer.state.*"


def deployer_deploy(agent_name: str) -> str:
    """Published when a deploy of `agent_name` ends (deployed | failed | denied)."""
    return f"hive.deployer.deploy.{validate_agent_name(agent_name, allow_reserved=True)}"


DEPLOYER_DEPLOY_ALL = "hive.deployer.deploy.*"


def session(verb: str) -> str:
    if verb not in SESSION_VERBS:
        raise ValueError(f"unknown session verb {verb!r}")
    return f"hive.session.{verb}"


# --- dashboard --------------------------------------------------------------
DASHBOARD_INFO = "hive.dashboard.info"


# --- backup -----------------------------------------------------------------
BACKUP_VERBS = ("run", "list", "verify", "restore", "prune")
BACKUP_DONE = "hive.backup.done"
BACKUP_PROGRESS = "hive.backup.progress"


def backup(verb: str) -> str:
    if verb not in BACKUP_VERBS:
        raise ValueError(f"unknown backup verb {verb!r}")
    return f"hive.backup.{verb}"


# --- hosts (issue 26): the hub's registry and the agent hosts ---------------
# `hive.hosts.<verb>`: the operator asks the hub (the deployer) about hosts.
# `hive.host.<host>.<verb>`: the deployer asks an agent host's hive-agenthost.
# `hive.host.<host>.up.<leaf>`: what an agent host tells the hub (its NATS user may
# publish nothing else, so a host can neither speak for another nor start agents).
HOSTS_VERBS = ("add", "remove", "list", "move")
HOST_VERBS = ("start", "stop", "pack", "read", "write", "commit", "drop", "history", "turn_stats",
              "session_start", "session_read", "session_pack", "session_drop")
HOST_UP = ("heartbeat", "creds")
AGENTHOST_SERVICE = "hive-agenthost"


def hosts(verb: str) -> str:
    if verb not in HOSTS_VERBS:
        raise ValueError(f"unknown hosts verb {verb!r}")
    return f"hive.hosts.{verb}"


def host(host_name: str, verb: str) -> str:
    if verb not in HOST_VERBS:
        raise ValueError(f"unknown host verb {verb!r}")
    return f"hive.host.{validate_agent_name(host_name, allow_reserved=True)}.{verb}"


def host_up(host_name: str, leaf: str) -> str:
    if leaf not in HOST_UP:
        raise ValueError(f"unknown host report {leaf!r}")
    return f"hive.host.{validate_agent_name(host_name, allow_reserved=True)}.up.{leaf}"


def host_up_pattern(leaf: str) -> str:
    """Every host's `leaf` report, e.g. `hive.host.*.up.heartbeat` (the deployer listens)."""
    if leaf not in HOST_UP:
        raise ValueError(f"unknown host report {leaf!r}")
    return f"hive.host.*.up.{leaf}"


# --- NATS micro discovery ($SRV) ---------------------------------------------
# nats.micro answers PING/INFO/STATS at `$SRV.<verb>` (every service),
# `$SRV.<verb>.<name>` (every instance of a kind) and `$SRV.<verb>.<name>.<id>`.
# A service run under an agent's NATS identity (the harness) answers only at
# its own `$SRV.<verb>.hive-harness.<agent>` (hivewire.natsauth lets it
# subscribe to nothing else there); the deployer relays the broadcasts to the
# harnesses it runs (hive_deployer.microrelay).
SRV = "$SRV"
SRV_VERBS = ("PING", "INFO", "STATS")
HARNESS_SERVICE = "hive-harness"


def srv(verb: str, name: str | None = None, id: str | None = None) -> str:
    """`$SRV.<verb>[.<name>[.<id>]]`."""
    if verb not in SRV_VERBS:
        raise ValueError(f"unknown micro verb {verb!r}")
    if id is not None and name is None:
        raise ValueError("a micro id needs a service name")
    return ".".join(p for p in (SRV, verb, name, id) if p is not None)


def harness_srv(verb: str, agent: str) -> str:
    """`$SRV.<verb>.hive-harness.<agent>`: the one discovery subject an agent's harness answers."""
    return srv(verb, HARNESS_SERVICE, validate_agent_name(agent, allow_reserved=True))


def harness_srv_pattern(agent: str) -> str:
    """`$SRV.*.hive-harness.<agent>`: those subjects for every verb (an agent's NATS permission)."""
    return f"{SRV}.*.{HARNESS_SERVICE}.{validate_agent_name(agent, allow_reserved=True)}"


def token(subject: str, index: int) -> str:
    """The `index`-th dot-separated token of `subject` ('' when absent)."""
    parts = subject.split(".")
    return parts[index] if 0 <= index < len(parts) else ""
