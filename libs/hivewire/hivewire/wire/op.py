"""What one operation of the wire contract is: `Op`, and who takes part in it.

An `Op` names a subject pattern (`hive.broker.{agent}.send`), its request
type and reply type (an event: its payload and no reply), the service that
answers it (an event: the one that publishes it), who may call it (an event:
who may listen), and one line of doc. The registry of every op is
`hivewire.wire.ops`; services build their endpoints from it
(`Endpoint.of`), clients call through it (`HiveClient.request`), and
`hivewire.natsauth` derives NATS permissions from it.

Subject parameters are agent or host names, validated like any name before a
subject is built. `self_param` names the parameter a caller with a name of its
own (an agent, the operator, an agent host) must fill with that name: the
`{agent}` of `hive.broker.{agent}.send` is the sender, so an agent may only
send as itself. A service run under an agent's or a host's identity (the
harness, the agent host) serves and publishes only with its own name in
`Service.binds`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hivewire.names import is_agent_name, validate_agent_name

Req = TypeVar("Req")
Rep = TypeVar("Rep", covariant=True)  # an op only produces its reply type: Op[X, R] is an Op[X, R | None]

_PARAM = re.compile(r"\{([a-z_]+)\}")
PARAMS = ("agent", "host")  # every parameter is a name (validate_agent_name)
_SUBJECTS_CACHED = 4096  # per op


class Kind(enum.Enum):
    REQUEST = "request"  # request/reply: the service answers every request
    EVENT = "event"  # published, no reply


class Service(enum.Enum):
    """Who answers (or publishes): the micro service name."""

    BROKER = "hive-broker"
    DEPLOYER = "hive-deployer"
    DASHBOARD = "hive-dashboard"
    BACKUP = "hive-backup"
    HARNESS = "hive-harness"
    AGENTHOST = "hive-agenthost"

    @property
    def binds(self) -> str | None:
        """The parameter its own name fills: one agent's harness, one host's agent host."""
        return {"hive-harness": "agent", "hive-agenthost": "host"}.get(self.value)

    @property
    def short(self) -> str:
        return self.value.removeprefix("hive-")


class Caller(enum.Enum):
    """Who may call an op (for an event: who may listen to it)."""

    AGENT = "agent"  # the agent named in the subject (its harness and its hive tools), only as itself
    MANAGER = "manager"  # the `manager` agent
    OPERATOR = "operator"  # the person: the `hive` CLI, and the dashboard on their behalf
    BROKER = "broker"
    DEPLOYER = "deployer"
    DASHBOARD = "dashboard"
    BACKUP = "backup"
    HOST = "host"  # the agent host named in the subject, only as itself

    @property
    def identity(self) -> str | None:
        """The name it fills `self_param` with (None: its own per-connection name, or any)."""
        return {"manager": "manager", "operator": "operator"}.get(self.value)


@dataclass(frozen=True, eq=False)
class Op(Generic[Req, Rep]):
    """One subject of the contract. Build with `request()` or `event()`."""

    name: str  # the micro endpoint name (an event: a short name), unique per service
    subject: str  # pattern, parameters in braces: `hive.agent.{agent}.ctl.state`
    request: type[Req]  # an event: its payload
    reply: type[Rep]  # an event: NoneType
    service: Service
    callers: frozenset[Caller]
    doc: str
    kind: Kind = Kind.REQUEST
    self_param: str | None = None
    params: tuple[str, ...] = field(init=False)
    pattern: str = field(init=False)  # the NATS wildcard: each parameter a `*`
    _tokens: tuple[str | None, ...] = field(init=False, repr=False)  # None: a parameter
    # concrete subjects already built (the broker builds one per wake it publishes), keyed by the
    # value of an op's one parameter, else by (name, value) pairs
    _subjects: dict[object, str] = field(init=False, repr=False, default_factory=dict)
    _only: str = field(init=False, repr=False)  # the one parameter's name ("" for any other count)

    def __post_init__(self) -> None:
        params = tuple(_PARAM.findall(self.subject))
        unknown = [p for p in params if p not in PARAMS]
        if unknown:
            raise ValueError(f"{self.subject}: unknown parameter(s) {unknown}")
        if self.self_param is not None and self.self_param not in params:
            raise ValueError(f"{self.subject}: self_param {self.self_param!r} is not a parameter")
        named = {Caller.AGENT, Caller.HOST} & self.callers
        if named and self.self_param is None:
            raise ValueError(f"{self.subject}: {sorted(c.value for c in named)} may only call as themselves")
        if self.service.binds and self.service.binds not in params:
            raise ValueError(f"{self.subject}: {self.service.value} answers only its own {self.service.binds}")
        tokens = tuple(None if _PARAM.fullmatch(t) else t for t in self.subject.split("."))
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "pattern", ".".join("*" if t is None else t for t in tokens))
        object.__setattr__(self, "_tokens", tokens)
        object.__setattr__(self, "_only", params[0] if len(params) == 1 else "")

    @property
    def id(self) -> str:
        """`<service>.<name>`, e.g. `broker.send`: unique in the registry."""
        return f"{self.service.short}.{self.name}"

    def subject_for(self, **params: str) -> str:
        """The concrete subject: every parameter given, each a valid name."""
        return self.subject_of(params)

    def subject_of(self, params: dict[str, str]) -> str:
        """`subject_for` with the parameters as a dict (`encode_event` passes its own on).
        Hot: the broker builds a wake's subject per send, so a cached subject costs one
        lookup by the parameter's value (a str, its hash cached), not a tuple built and hashed."""
        key: object = params.get(self._only) if len(params) == 1 else tuple(params.items())
        got = self._subjects.get(key)
        if got is not None:
            return got
        if set(params) != set(self.params):
            raise ValueError(f"{self.id} needs {list(self.params)}, got {sorted(params)}")
        got = self.subject.format(**{k: validate_agent_name(v, allow_reserved=True) for k, v in params.items()})
        if len(self._subjects) < _SUBJECTS_CACHED:
            self._subjects[key] = got
        return got

    def fill(self, **params: str) -> str:
        """The subject with the given parameters filled and the others `*` (to serve or permit)."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"{self.id} has no parameter(s) {sorted(unknown)}")
        return self.subject.format(**{
            p: validate_agent_name(params[p], allow_reserved=True) if p in params else "*" for p in self.params})

    def matches(self, subject: str) -> bool:
        """True when `subject` (concrete, or with `*` for parameters) is one of this op's."""
        toks = subject.split(".")
        if len(toks) != len(self._tokens):
            return False
        for mine, theirs in zip(self._tokens, toks, strict=True):
            if mine is None:
                if theirs != "*" and not is_agent_name(theirs):
                    return False
            elif mine != theirs:
                return False
        return True


def request(
    name: str, subject: str, req: type[Req], rep: type[Rep], service: Service, callers: set[Caller], doc: str,
    *, self_param: str | None = None,
) -> Op[Req, Rep]:
    return Op(name, subject, req, rep, service, frozenset(callers), doc, Kind.REQUEST, self_param)


def event(
    name: str, subject: str, payload: type[Req], publisher: Service, listeners: set[Caller], doc: str,
    *, self_param: str | None = None,
) -> Op[Req, None]:
    return Op(name, subject, payload, type(None), publisher, frozenset(listeners), doc, Kind.EVENT, self_param)


def find(ops: tuple[Op[Any, Any], ...], subject: str, kind: Kind | None = None) -> Op[Any, Any] | None:
    """The op `subject` belongs to (first match), None when the contract has no such subject."""
    for o in ops:
        if (kind is None or o.kind is kind) and o.matches(subject):
            return o
    return None
