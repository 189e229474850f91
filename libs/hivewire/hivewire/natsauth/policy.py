"""Who may do what on NATS: the users (`svc_<service>`, `agent_<name>`, `operator`), their
inbox prefixes, and each one's publish/subscribe rights, derived from the op registry's
callers (hivewire.wire.ops)."""

from __future__ import annotations

from typing import Any

from hivewire import subjects
from hivewire.names import MANAGER, validate_agent_name
from hivewire.wire import ops
from hivewire.wire.op import Caller, Service

ACCOUNT = "HIVE"
SERVICES = ("broker", "deployer", "dashboard", "backup")
OPERATOR_USER = "operator"
# The manager's tools that go straight to the deployer (the contract's ops `manager` may call).
MANAGER_DEPLOYER_VERBS = tuple(o.name for o in ops.for_service(Service.DEPLOYER) if Caller.MANAGER in o.callers)
INBOX_ROOT = "_INBOX"


def service_user(short: str) -> str:
    if short not in SERVICES:
        raise ValueError(f"unknown service {short!r}; known: {', '.join(SERVICES)}")
    return f"svc_{short}"


def agent_user(name: str) -> str:
    return f"agent_{validate_agent_name(name, allow_reserved=True)}"


def inbox_prefix(user: str) -> str:
    """`_INBOX_<user>`: agent names have no `_`, so prefixes never collide."""
    return f"{INBOX_ROOT}_{user}"


def perms(pub: list[str], sub: list[str], *, pub_deny: list[str] | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {
        "publish": {"allow": pub},
        "subscribe": {"allow": sub},
        "allow_responses": True,  # reply to requests it serves, nothing more
    }
    if pub_deny:
        p["publish"]["deny"] = pub_deny
    return p


def agent_permissions(name: str) -> dict[str, Any]:
    """An agent speaks only under its own token and reads only its own inbox: what the
    contract lets it call as `Caller.AGENT` (and `Caller.MANAGER` for `manager`), and
    serve and publish as its harness (hivewire.wire.ops)."""
    name = validate_agent_name(name, allow_reserved=True)
    user = agent_user(name)
    roles = {Caller.AGENT, Caller.MANAGER} if name == MANAGER else {Caller.AGENT}
    pub, sub = ops.rights(roles, Service.HARNESS, name)
    # Under `$SRV` only its own harness's discovery subjects (`$SRV.<verb>.hive-harness.<name>`):
    # whoever may subscribe to the `$SRV.PING`/`$SRV.INFO` broadcasts can answer them as
    # any service (a fake `hive-broker` in `hive status` and `nats micro ls`).
    sub = [*sub, subjects.harness_srv_pattern(name), f"{inbox_prefix(user)}.>"]
    return perms(pub, sub, pub_deny=["hive.operator.>", "$JS.>", "$SYS.>", "$O.>", "$KV.>"])


def service_permissions(short: str, reply_to: tuple[str, ...] = ()) -> dict[str, Any]:
    """A service's rights; `reply_to`: every user's inbox prefix (see `render_auth`)."""
    p = _service_permissions(short)
    # A reload (every issue/revoke of an agent) resets the replies `allow_responses`
    # granted for requests in flight, so a service's reply to a request it received just
    # before would be refused and its caller would wait out its timeout (a spawn, every
    # agent's long-poll recv). Services may therefore publish to every user's inbox; that
    # lets no one read anyone else's replies (subscribe rights are unchanged).
    p["publish"]["allow"] = [*p["publish"]["allow"], *(f"{prefix}.>" for prefix in reply_to)]
    return p


# What a service may do beyond the contract's ops (hivewire.wire.ops): NATS's own subjects.
# (publish, subscribe); every service also subscribes to `$SRV.>` (micro discovery) and its inbox.
_SERVICE_EXTRAS: dict[str, tuple[list[str], list[str]]] = {
    # `$JS.API.>`/`$JS.ACK.>`: the cost ledger (hive_broker.ledger) keeps the turn-row stream and its
    # durable consumer, fetches from it and acks what it committed. The deployer and ctl.state
    # rights are not used by today's broker; granted since NATS auth landed and tests/ops asserts them.
    "broker": (["$JS.API.>", "$JS.ACK.>", "hive.deployer.list", "hive.deployer.spawn", "hive.agent.*.ctl.state"],
               []),
    # `$SRV.*.hive-harness.*`: it relays discovery to the harnesses it runs (hive_deployer.microrelay)
    "deployer": ([f"{subjects.SRV}.*.{subjects.HARNESS_SERVICE}.*"], []),
    # The operator's console: micro discovery, and read-only views of all of hive.>
    "dashboard": (["$SRV.>"], ["hive.>"]),
    "backup": (["$JS.>", "$O.>", "$KV.>"], []),
}


def _service_permissions(short: str) -> dict[str, Any]:
    """The contract's rights of `svc_<short>` (the dashboard also calls as the operator) plus `_SERVICE_EXTRAS`."""
    inbox = f"{inbox_prefix(service_user(short))}.>"
    roles = {Caller(short), Caller.OPERATOR} if short == "dashboard" else {Caller(short)}
    pub, sub = ops.rights(roles, Service(f"hive-{short}"))
    extra_pub, extra_sub = _SERVICE_EXTRAS[short]
    return perms([*pub, *extra_pub], [*sub, *extra_sub, "$SRV.>", inbox])


def operator_permissions() -> dict[str, Any]:
    """The person at the CLI: every request, `hive tap`, `nats micro`, JetStream admin."""
    return perms(["hive.>", "$SRV.>", "$JS.API.>", "$O.>"], ["hive.>", "$SRV.>", f"{inbox_prefix(OPERATOR_USER)}.>"])


def permissions_for(user: str, reply_to: tuple[str, ...] = ()) -> dict[str, Any]:
    if user == OPERATOR_USER:
        return operator_permissions()
    if user.startswith("svc_"):
        return service_permissions(user[4:], reply_to)
    if user.startswith("agent_"):
        return agent_permissions(user[6:])
    if user.startswith("host_"):  # an agent host's hive-agenthost (issue 26)
        from hivewire.hostauth import host_permissions

        return host_permissions(user[5:])
    raise ValueError(f"unknown NATS user {user!r}")
