"""The operation registry (hivewire.wire.ops): what can be served, called and permitted."""

from __future__ import annotations

from typing import Any

import pytest

from hivewire import codec, hostauth, natsauth, subjects
from hivewire.errors import HiveError
from hivewire.service import BatchEndpoint, Context, Endpoint, HiveClient, MicroService, encode_event
from hivewire.transport import MemoryTransport
from hivewire.wire import agent as wa
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.op import Caller, Kind, Service


async def _state(ctx: Context, req: Empty) -> wa.AgentState:
    return wa.AgentState(status="online", turn_state="idle", turn_state_since=1.0, model="m", context_window=9)


def test_registry_is_consistent() -> None:
    ids = [o.id for o in ops.OPS]
    assert len(ids) == len(set(ids))
    for o in ops.OPS:
        assert o.doc and o.subject.startswith("hive.")
        assert ops.lookup(o.pattern) is o, o.id  # no subject shadows another
        if o.kind is Kind.EVENT:
            assert o.reply is type(None)
    names = [(o.service, o.name) for o in ops.OPS if o.kind is Kind.REQUEST]
    assert len(names) == len(set(names))  # endpoint names unique per service


def test_a_subject_outside_the_contract_cannot_be_served() -> None:
    with pytest.raises(ValueError, match="not in the wire contract"):
        Endpoint("frob", "hive.broker.*.frobnicate", Empty, _state)
    with pytest.raises(ValueError, match="not in the wire contract"):
        Endpoint("x", "t.*.send", wb.SendRequest, _state)
    with pytest.raises(ValueError, match="not in the wire contract"):  # an event is published, not served
        Endpoint("presence", "hive.agent.*.presence", wa.Presence, _state)
    with pytest.raises(ValueError, match="not in the wire contract"):
        BatchEndpoint("send", "hive.broker.*.sendx", wb.SendRequest, _state)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes SendRequest"):
        Endpoint("send", "hive.broker.*.send", wb.RecvRequest, _state)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is an event"):
        Endpoint.of(ops.PRESENCE, _state)  # type: ignore[arg-type]


def test_endpoint_of_fills_parameters_and_refuses_bad_ones() -> None:
    ep = Endpoint.of(ops.CTL_STATE, _state, agent="alice")
    assert (ep.name, ep.subject, ep.request_type) == ("state", "hive.agent.alice.ctl.state", Empty)
    assert Endpoint.of(ops.BROKER_COUNTS, _state).subject == "hive.broker.*.counts"  # type: ignore[arg-type]
    with pytest.raises(HiveError):
        Endpoint.of(ops.CTL_STATE, _state, agent="Bad.Name")
    with pytest.raises(ValueError, match="no parameter"):
        Endpoint.of(ops.CTL_STATE, _state, host="h1")


def test_subject_for_needs_every_parameter_and_valid_names() -> None:
    assert ops.BROKER_SEND.subject_for(agent="bob") == subjects.broker("bob", "send")
    assert ops.HOST_CREDS.subject_for(host="h2") == subjects.host_up("h2", "creds")
    with pytest.raises(ValueError):
        ops.BROKER_SEND.subject_for()
    with pytest.raises(HiveError):
        ops.BROKER_SEND.subject_for(agent="*")


def test_a_cached_subject_is_only_returned_for_the_same_parameter() -> None:
    """subject_for keeps what it built, keyed by the value of the op's one parameter: a second
    call returns it, and a call with another parameter's name or a bad value still raises."""
    for _ in range(2):
        assert ops.WAKE.subject_for(agent="bob") == subjects.wake("bob")
        assert ops.BROKER_CHANGED.subject_for() == subjects.BROKER_CHANGED
        with pytest.raises(ValueError, match="needs"):
            ops.WAKE.subject_for(host="bob")
        with pytest.raises(ValueError, match="needs"):
            ops.WAKE.subject_for(agent="bob", host="bob")
        with pytest.raises(ValueError, match="needs"):
            ops.BROKER_CHANGED.subject_for(agent="bob")
        with pytest.raises(HiveError):
            ops.WAKE.subject_for(agent="Bob")


def test_encode_event_checks_the_op_and_the_payload() -> None:
    wake = wb.Wake(reason="message", ref="7")
    assert encode_event(ops.WAKE, wake, agent="bob") == (subjects.wake("bob"), codec.encode(wake))
    with pytest.raises(TypeError, match="takes Wake"):
        encode_event(ops.WAKE, wb.Changed(table="messages", id="7", op="insert"), agent="bob")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is a request"):
        encode_event(ops.BROKER_SEND, wb.SendRequest(to="bob", body="hi"), agent="bob")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs"):
        encode_event(ops.WAKE, wake)


def test_every_subject_helper_is_in_the_contract() -> None:
    """What subjects.py builds is what the registry has, and the other way round."""
    built = (
        [subjects.broker("alice", v) for v in subjects.BROKER_VERBS]
        + [subjects.operator(a, v) for a, v in subjects.OPERATOR_SUBJECTS]
        + [subjects.broker_registry(v) for v in subjects.BROKER_REGISTRY_VERBS]
        + [subjects.ctl("alice", v) for v in subjects.AGENT_CTL_VERBS]
        + [subjects.deployer(v) for v in subjects.DEPLOYER_VERBS]
        + [subjects.session(v) for v in subjects.SESSION_VERBS]
        + [subjects.backup(v) for v in subjects.BACKUP_VERBS]
        + [subjects.hosts(v) for v in subjects.HOSTS_VERBS]
        + [subjects.host("h1", v) for v in subjects.HOST_VERBS]
        + [subjects.host_up("h1", v) for v in subjects.HOST_UP]
        + [f(a) for f in (subjects.wake, subjects.events, subjects.turns, subjects.ledger_turn,
                          subjects.presence, subjects.typing, subjects.deployer_state, subjects.deployer_deploy)
           for a in ("alice",)]
        + [subjects.BROKER_CHANGED, subjects.SESSION_LEDGER, subjects.BACKUP_DONE, subjects.BACKUP_PROGRESS,
           subjects.DASHBOARD_INFO]
    )
    found = {s: ops.lookup(s) for s in built}
    assert [s for s, o in found.items() if o is None] == []
    assert {o.id for o in found.values() if o is not None} == {o.id for o in ops.OPS}


async def test_client_request_returns_the_ops_reply_type(memory_transport: MemoryTransport) -> None:
    class Harness(MicroService):
        name = "hive-harness"

        def endpoints(self) -> list[Endpoint[Any] | BatchEndpoint[Any]]:
            return [Endpoint.of(ops.CTL_STATE, _state, agent="alice")]

    svc = Harness(memory_transport)
    await svc.start()
    try:
        client = HiveClient(memory_transport)
        got = await client.request(ops.CTL_STATE, Empty(), agent="alice")
        assert isinstance(got, wa.AgentState) and got.context_window == 9
        with pytest.raises(ValueError, match="is an event"):
            await client.request(ops.PRESENCE, wa.Presence(state="idle", since=0, instance="i"), agent="alice")
    finally:
        await svc.stop()


def _covered(perm: str) -> bool:
    """A `hive.` permission names only subjects of the contract (or is a whole-namespace view)."""
    if perm == "hive.>":
        return True
    toks = perm.split(".")
    return any(len(o.subject.split(".")) == len(toks) and all(
        t == m or (m.startswith("{") and (t == "*" or t.islower())) for t, m in zip(toks, o.subject.split("."),
                                                                                     strict=True))
        for o in ops.OPS)


@pytest.mark.parametrize("user", [*(natsauth.service_user(s) for s in natsauth.SERVICES), "agent_alice",
                                  "agent_manager", "host_h2"])
def test_permissions_name_only_contract_subjects(user: str) -> None:
    p = natsauth.permissions_for(user)
    for perm in [*p["publish"]["allow"], *p["subscribe"]["allow"]]:
        if perm.startswith("hive."):
            assert _covered(perm), (user, perm)


def test_no_permission_for_a_subject_outside_the_contract() -> None:
    def allows(perms: list[str], subject: str) -> bool:
        def match(p: str) -> bool:
            pt, st = p.split("."), subject.split(".")
            if pt[-1] == ">":
                return st[: len(pt) - 1] == pt[:-1] or all(a in ("*", b) for a, b in zip(pt[:-1], st, strict=False))
            return len(pt) == len(st) and all(a in ("*", b) for a, b in zip(pt, st, strict=True))
        return any(match(p) for p in perms)

    alice = natsauth.agent_permissions("alice")
    assert allows(alice["publish"]["allow"], "hive.broker.alice.send")
    assert not allows(alice["publish"]["allow"], "hive.broker.alice.frobnicate")
    assert not allows(alice["publish"]["allow"], "hive.agent.alice.ctl.prompt")  # served by her harness, not called
    assert not allows(alice["subscribe"]["allow"], "hive.agent.alice.secret")
    broker = natsauth.service_permissions("broker")
    assert allows(broker["subscribe"]["allow"], "hive.broker.bob.recv")
    assert not allows(broker["subscribe"]["allow"], "hive.broker.bob.frobnicate")
    host = hostauth.host_permissions("h2")
    assert allows(host["publish"]["allow"], "hive.host.h2.up.heartbeat")
    assert not allows(host["publish"]["allow"], "hive.host.h2.up.other")
    assert not allows(host["publish"]["allow"], "hive.host.h3.up.heartbeat")


def test_derived_rights_follow_the_callers() -> None:
    pub, sub = ops.rights({Caller.AGENT, Caller.MANAGER}, Service.HARNESS, "manager")
    assert "hive.deployer.kill" in pub and "hive.deployer.spawn" not in pub
    assert "hive.agent.manager.ctl.state" in sub and "hive.agent.manager.wake" in sub
    pub, _ = ops.rights({Caller.OPERATOR})
    assert "hive.broker.operator.send" in pub and "hive.broker.*.send" not in pub  # the operator sends as itself
    with pytest.raises(ValueError, match="needs its name"):
        ops.rights({Caller.AGENT})
    assert natsauth.MANAGER_DEPLOYER_VERBS == ("list", "start", "restart", "kill")
