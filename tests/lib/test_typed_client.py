"""The client speaks only the contract: a request or an event goes out on its op's subject, with
its op's type, or not at all (hivewire.service: HiveClient.request/emit, MicroService.emit)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest

from hivewire import codec
from hivewire.errors import HiveError
from hivewire.service import HiveClient, MicroService, encode_event
from hivewire.transport import MemoryTransport, Msg
from hivewire.wire import agent as wa
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.common import Empty


class Recording(MemoryTransport):
    """What went out: (subject, bytes) of every request and publish (replies excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[tuple[str, bytes]] = []

    async def request(self, subject: str, data: bytes, timeout: float = 5.0,
                      headers: dict[str, str] | None = None) -> Msg:
        self.out.append((subject, data))
        return await super().request(subject, data, timeout, headers)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None, reply: str = "") -> None:
        if not reply:
            self.out.append((subject, data))
        await super().publish(subject, data, headers, reply)

    async def publish_many(self, msgs: Sequence[tuple[str, bytes]]) -> None:
        for subject, data in msgs:
            await self.publish(subject, data)


def test_there_is_no_untyped_call_or_publish() -> None:
    """Nothing takes a bare subject: every subject with its types is an op's."""
    for name in ("call", "publish"):
        assert not hasattr(HiveClient, name), name
        assert not hasattr(MicroService, name), name


async def test_a_request_of_the_wrong_type_never_goes_out() -> None:
    t = Recording()
    client = HiveClient(t, timeout=0.5)
    wrong: list[tuple[Any, Any, dict[str, str]]] = [
        (ops.BROKER_COUNTS, wb.LooseEndsRequest(), {"agent": "alice"}),  # the shape is close: still refused
        (ops.DEPLOYER_SPAWN, wb.RegistryRequest(name="bob"), {}),
        (ops.CTL_LOGIN, {"action": "start"}, {"agent": "alice"}),  # a dict is not the struct
        (ops.CTL_STATE, None, {"agent": "alice"}),
    ]
    for op, req, params in wrong:
        with pytest.raises(TypeError, match=re.escape(f"{op.id} takes {op.request.__name__}")):
            await client.request(op, req, **params)
    assert t.out == []
    # the right type goes out on the op's subject (nobody answers here)
    with pytest.raises(HiveError) as err:
        await client.request(ops.BROKER_COUNTS, Empty(), agent="alice")
    assert err.value.code == "unavailable"
    assert t.out == [("hive.broker.alice.counts", b"{}")]


async def test_an_event_goes_out_on_its_ops_subject_with_its_ops_type_only() -> None:
    t = Recording()
    client = HiveClient(t)
    p = wa.Presence(state="idle", since=1.0, instance="i1")
    with pytest.raises(TypeError, match=r"harness\.presence takes Presence"):
        await client.emit(ops.PRESENCE, wa.Typing(block="b", offset=0, text="x"), agent="alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is a request"):
        await client.emit(ops.CTL_STATE, Empty(), agent="alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is an event"):
        await client.request(ops.PRESENCE, p, agent="alice")
    with pytest.raises(ValueError, match="needs"):
        await client.emit(ops.PRESENCE, p)  # its {agent} left out
    with pytest.raises(HiveError):
        await client.emit(ops.PRESENCE, p, agent="Not.A.Name")
    assert t.out == []
    await client.emit(ops.PRESENCE, p, agent="alice")
    assert t.out == [("hive.agent.alice.presence", codec.encode(p))]
    assert encode_event(ops.WAKE, wb.Wake(reason="message", ref="7"), agent="bob") == (
        "hive.agent.bob.wake", codec.encode(wb.Wake(reason="message", ref="7")))


async def test_a_service_emits_only_through_its_ops() -> None:
    t = Recording()
    svc = MicroService(t)
    with pytest.raises(TypeError):
        await svc.emit(ops.BACKUP_DONE, wb.Changed(table="t", id="1", op="insert"))  # type: ignore[arg-type]
    assert t.out == []
