"""The wire contract as an AsyncAPI 3.0 document, built from `hivewire.wire.ops`.

One channel per subject pattern (`{agent}`/`{host}` as channel parameters), one
operation per op: a request is `receive` by the service that answers it, with a
reply (its reply type, or the error envelope) on a dynamic reply channel (the
NATS reply inbox); an event is `send` by the service that publishes it. Message
payloads are JSON Schemas from the msgspec types (`msgspec.json.schema_components`).
Who may call, and which service answers, are `x-hive-callers` / `x-hive-service`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hivewire.errors import ERROR_STATUS
from hivewire.wire import ops
from hivewire.wire.common import ErrorReply
from hivewire.wire.op import Kind, Op

VERSION = "0.1.0"
PARAM_DOC = {
    "agent": "An agent name (1 to 31 characters: a lowercase letter, then lowercase letters, digits or '-'); "
             "`operator` and `manager` where the operator or the manager speaks as itself.",
    "host": "An agent host's name (the same rule as agent names).",
}


def channel_id(op: Op[Any, Any]) -> str:
    return op.id.replace(".", "_")


def _types() -> list[type[Any]]:
    seen: dict[type[Any], None] = {ErrorReply: None}
    for o in ops.OPS:
        seen[o.request] = None
        if o.kind is Kind.REQUEST:
            seen[o.reply] = None
    return list(seen)


def _message(t: type[Any]) -> dict[str, Any]:
    doc = (t.__doc__ or "").strip()
    out: dict[str, Any] = {"name": t.__name__, "contentType": "application/json",
                           "payload": {"$ref": f"#/components/schemas/{t.__name__}"}}
    if doc and not doc.startswith(("Wire(", t.__name__ + "(")):  # msgspec gives undocumented structs a signature
        out["summary"] = doc.splitlines()[0]
    return out


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document (plain dicts, ready for YAML or JSON)."""
    types = _types()
    names = [t.__name__ for t in types]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"two wire types share a name: {sorted(dupes)}")
    _, schemas = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    messages = {t.__name__: _message(t) for t in types}
    messages["ErrorReply"]["summary"] = "An error: {error: {code, message}}, with the NATS micro error headers."
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for o in ops.OPS:
        cid = channel_id(o)
        ch: dict[str, Any] = {
            "address": o.subject,
            "description": o.doc,
            "messages": {"request" if o.kind is Kind.REQUEST else "event":
                         {"$ref": f"#/components/messages/{o.request.__name__}"}},
        }
        if o.params:
            ch["parameters"] = {p: {"description": PARAM_DOC[p]} for p in o.params}
        channels[cid] = ch
        callers = sorted(c.value for c in o.callers)
        operation: dict[str, Any] = {
            "action": "receive" if o.kind is Kind.REQUEST else "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": o.doc,
            "messages": [{"$ref": f"#/channels/{cid}/messages/{next(iter(ch['messages']))}"}],
            "x-hive-service": o.service.value,
            "x-hive-kind": o.kind.value,
            ("x-hive-callers" if o.kind is Kind.REQUEST else "x-hive-listeners"): callers,
        }
        if o.self_param:
            operation["x-hive-self-param"] = o.self_param
        if o.kind is Kind.REQUEST:
            rid = f"{cid}_reply"
            channels[rid] = {
                "address": None,  # the requester's reply inbox (NATS request/reply)
                "description": f"The reply to {o.subject}: {o.reply.__name__}, or the error envelope.",
                "messages": {"reply": {"$ref": f"#/components/messages/{o.reply.__name__}"},
                             "error": {"$ref": "#/components/messages/ErrorReply"}},
            }
            operation["reply"] = {"channel": {"$ref": f"#/channels/{rid}"},
                                  "messages": [{"$ref": f"#/channels/{rid}/messages/reply"},
                                               {"$ref": f"#/channels/{rid}/messages/error"}]}
        operations[o.id] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Hive",
            "version": VERSION,
            "description": (
                "The NATS wire contract of Hive, generated from hivewire.wire.ops by "
                "`python -m hivewire.contract --write` (do not edit). Requests are NATS request/reply "
                "with JSON bodies; an empty body means `{}`. Errors come back as "
                "`{\"error\": {\"code\", \"message\"}}` with the micro error headers; codes: "
                + ", ".join(f"{c} ({s})" for c, s in ERROR_STATUS.items()) + ". See docs/wire.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "localhost:4222", "protocol": "nats",
                             "description": "The hive's NATS (`hive up` embeds one; HIVE_NATS_URL otherwise)."}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def render() -> str:
    import yaml  # type: ignore[import-untyped]  # the generator's own dependency (requirements-test.txt)

    head = "# Generated by `python -m hivewire.contract --write` from hivewire.wire.ops; do not edit.\n"
    body: str = yaml.safe_dump(document(), sort_keys=False, width=110, allow_unicode=True)
    return head + body
