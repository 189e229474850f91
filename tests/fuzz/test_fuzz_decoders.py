"""Fuzz targets (hypothesis, bounded): the harness's stream-json parser and the
request decoder every NATS endpoint uses.

Every endpoint of every service decodes its request with `codec.decode(data,
RequestStruct)` (hivewire.service.MicroService), and every request struct is a
msgspec struct in `hivewire.wire`; so throwing random bytes and random JSON at
`codec.decode` for every struct there covers every endpoint's decoder. The only
allowed failure is a structured `HiveError`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hivewire.wire
from hive_harness.streamjson import StreamParser
from hivewire import codec
from hivewire.errors import HiveError

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), kids, max_size=5)),
                           max_leaves=20)
EVENT_TYPES = ["system", "assistant", "user", "result", "stream_event", None]
KEYS = ["message", "content", "usage", "model", "subtype", "error", "result", "modelUsage", "is_error",
        "api_error_status", "parent_tool_use_id", "session_id", "compact_metadata", "terminal_reason", "status"]


@st.composite
def cli_events(draw: st.DrawFn) -> Any:
    """JSON shaped like the CLI's events, with every field possibly the wrong type."""
    ev: dict[str, Any] = {"type": draw(st.sampled_from(EVENT_TYPES))}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True)):
        ev[key] = draw(json_values)
    if draw(st.booleans()):
        blocks = draw(st.lists(st.dictionaries(st.sampled_from(["type", "text", "name", "input", "id", "content",
                                                                "thinking", "tool_use_id", "is_error"]),
                                               json_values, max_size=5), max_size=3))
        for b in blocks:
            b.setdefault("type", draw(st.sampled_from(["text", "tool_use", "tool_result", "thinking", 7])))
        ev["message"] = {"content": blocks, "usage": draw(json_values), "model": draw(json_values)}
    return ev


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(st.one_of(cli_events().map(json.dumps), st.binary(max_size=200), st.text(max_size=200)),
                      max_size=8))
def test_stream_json_parser_never_raises(lines: list[Any]) -> None:
    p = StreamParser()
    for line in lines:
        drafts = p.feed(line)
        assert all(isinstance(k, str) and isinstance(v, dict) for k, v in drafts)
    s = p.summary
    assert s.ctx is None or isinstance(s.ctx, int)
    assert isinstance(s.cost, int) and isinstance(s.tool_call_count, int)


def _request_structs() -> list[type[msgspec.Struct]]:
    found: dict[str, type[msgspec.Struct]] = {}
    for mod in pkgutil.iter_modules(hivewire.wire.__path__):
        m = importlib.import_module(f"hivewire.wire.{mod.name}")
        for _, obj in inspect.getmembers(m, inspect.isclass):
            if issubclass(obj, msgspec.Struct) and obj.__module__ == m.__name__:
                found[f"{m.__name__}.{obj.__name__}"] = obj
    return [found[k] for k in sorted(found)]


STRUCTS = _request_structs()


def test_every_wire_module_was_found() -> None:
    mods = {t.__module__.rsplit(".", 1)[1] for t in STRUCTS}
    assert {"broker", "agent", "deployer", "backup"} <= mods


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda t: f"{t.__module__.rsplit('.', 1)[1]}.{t.__name__}")
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.text(max_size=12), json_values, max_size=6)
                      .map(lambda v: json.dumps(v).encode())))
def test_every_request_decoder_gives_a_struct_or_a_structured_error(struct: type[msgspec.Struct], data: bytes) -> None:
    try:
        got = codec.decode(data, struct)
    except HiveError as err:
        assert err.code in ("bad_request", "too_large", "bad_name"), err.code
        assert codec.error_payload(err)[0]  # it encodes as an error reply
        return
    assert isinstance(got, struct)
    codec.encode(got)  # a decoded request always re-encodes
