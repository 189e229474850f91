"""What a `HIVE_*` variable is (`Var`: name, kind, default, doc, readers), the kinds
(`text`, `number`, `flag`, ...) and the registry `VARS`; hivewire.config declares them.

`Var.get(env)` (env defaults to `os.environ`): unset or blank gives the default; a value
the variable does not accept raises `ConfigError`, whose message names the variable and
what it accepts. A `secret` variable's value is never shown: not in that message, not as
a default in docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

ALL = "all"  # read by every service (through `Settings`)


class ConfigError(ValueError):
    """A `HIVE_*` variable holds a value it does not accept."""

    def __init__(self, name: str, value: str, accepts: str) -> None:
        super().__init__(f"{name}={value}: must be {accepts}")
        self.name = name


@dataclass(frozen=True)
class Var(Generic[T]):
    name: str
    parse: Callable[[str], T]  # raises ValueError for a value it does not accept
    default: T
    accepts: str  # what a value must be, for errors and the docs ("a positive number")
    doc: str
    services: tuple[str, ...]
    default_doc: str = ""  # the default as the docs show it, when repr is not it
    blank: bool = False  # set but blank is a value (parsed), not the default: "no limit", "none"
    secret: bool = False  # a password or token: its value is never printed

    def get(self, env: Mapping[str, str] | None = None) -> T:
        value = (os.environ if env is None else env).get(self.name)
        raw = "" if value is None else value.strip()
        if value is None or (not raw and not self.blank):
            return self.default
        try:
            return self.parse(raw)
        except ValueError:
            raise ConfigError(self.name, "(secret)" if self.secret else raw, self.accepts) from None

    def shown_default(self) -> str:
        if self.secret:
            return "(unset)" if self.default is None else "(secret)"
        if self.default_doc:
            return self.default_doc
        if self.default is None:
            return "(unset)"
        return str(self.default)


VARS: dict[str, Var[object]] = {}


def _declare(var: Var[T]) -> Var[T]:
    if var.name in VARS:
        raise RuntimeError(f"{var.name} is declared twice")
    VARS[var.name] = var  # type: ignore[assignment]
    return var


def text(name: str, default: str, doc: str, services: tuple[str, ...], *, lower: bool = False) -> Var[str]:
    return _declare(Var(name, (lambda v: v.lower()) if lower else str, default, "any text", doc, services))


def address(name: str, doc: str, services: tuple[str, ...]) -> Var[str]:
    """An IP address, as written back by `ipaddress` ("" when unset)."""
    def parse(v: str) -> str:
        return str(ipaddress.ip_address(v.strip("[]")))

    return _declare(Var(name, parse, "", "an IP address", doc, services))


def optional(
    name: str, doc: str, services: tuple[str, ...], *, accepts: str = "any text", blank: bool = False,
    secret: bool = False,
) -> Var[str | None]:
    def parse(v: str) -> str | None:
        return v

    return _declare(Var(name, parse, None, accepts, doc, services, blank=blank, secret=secret))


def _accepts(what: str, minimum: float | None, positive: bool) -> str:
    if positive:
        return f"a positive {what}"
    article = "an" if what[0] in "aeiou" else "a"
    return f"{article} {what}" if minimum is None else f"{article} {what} >= {minimum:g}"


def _check(n: float, v: str, minimum: float | None, positive: bool) -> None:
    if n != n or (positive and not n > 0) or (minimum is not None and n < minimum):  # n != n: NaN
        raise ValueError(v)


def number(
    name: str, default: float, doc: str, services: tuple[str, ...], *,
    positive: bool = False, minimum: float | None = None, default_doc: str = "",
) -> Var[float]:
    def parse(v: str) -> float:
        n = float(v)
        _check(n, v, minimum, positive)
        return n

    accepts = _accepts("number", minimum, positive)
    return _declare(Var(name, parse, default, accepts, doc, services, default_doc=default_doc or f"{default:g}"))


def integer(
    name: str, default: int, doc: str, services: tuple[str, ...], *,
    positive: bool = False, minimum: int | None = None,
) -> Var[int]:
    def parse(v: str) -> int:
        n = int(v)
        _check(n, v, minimum, positive)
        return n

    return _declare(Var(name, parse, default, _accepts("integer", minimum, positive), doc, services))


def optional_integer(name: str, doc: str, services: tuple[str, ...]) -> Var[int | None]:
    def parse(v: str) -> int | None:
        n = int(v)
        if n <= 0:
            raise ValueError(v)
        return n

    return _declare(Var(name, parse, None, "a positive integer", doc, services))


def choice(name: str, options: tuple[str, ...], default: str, doc: str, services: tuple[str, ...]) -> Var[str]:
    def parse(v: str) -> str:
        if v.lower() not in options:
            raise ValueError(v)
        return v.lower()

    return _declare(Var(name, parse, default, f"one of {', '.join(options)}", doc, services))


FLAG_TRUE = ("1", "true", "yes", "on")
FLAG_FALSE = ("0", "false", "no", "off")


def flag(name: str, default: bool, doc: str, services: tuple[str, ...]) -> Var[bool]:
    def parse(v: str) -> bool:
        if v.lower() in FLAG_TRUE:
            return True
        if v.lower() in FLAG_FALSE:
            return False
        raise ValueError(v)

    accepts = f"one of {', '.join(FLAG_TRUE)} (on) or {', '.join(FLAG_FALSE)} (off)"
    return _declare(Var(name, parse, default, accepts, doc, services, default_doc="1" if default else "0"))


UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int | None:
    """`4G`, `512M`, `1048576`; empty or `0` means no limit (None)."""
    t = text.strip().lower().removesuffix("b")
    if not t or t == "0":
        return None
    mult = UNITS.get(t[-1], 1)
    num = t[:-1] if t[-1] in UNITS else t
    if not num.isdigit():
        raise ValueError(f"not a size: {text!r} (use e.g. 4G, 512M or bytes)")
    return int(num) * mult


def size(name: str, default: int | None, doc: str, services: tuple[str, ...], *, default_doc: str) -> Var[int | None]:
    """A size in bytes (`4G`, `512M`, `1048576`); `0` or set blank: no limit (None)."""
    return _declare(Var(name, parse_size, default, "a size like 4G, 512M or bytes (0: no limit)", doc, services,
                        default_doc, blank=True))


def limit(name: str, default: int, doc: str, services: tuple[str, ...]) -> Var[int | None]:
    """A whole number; `0` or set blank: no limit (None)."""

    def parse(v: str) -> int | None:
        if v and not v.isdigit():
            raise ValueError(v)
        return int(v) or None if v else None

    return _declare(Var(name, parse, default, "a whole number (0: no limit)", doc, services, blank=True))


def path(name: str, doc: str, services: tuple[str, ...], *, default_doc: str) -> Var[Path | None]:
    """A path; unset is None, and the reader applies the default `default_doc` names
    (computed then: it may depend on the user's home)."""

    def parse(v: str) -> Path | None:
        return Path(v).expanduser()

    return _declare(Var(name, parse, None, "a path", doc, services, default_doc))


def check_or_exit(service: str, env: Mapping[str, str] | None = None) -> None:
    """`check`, and a bad value ends the process: exit status 2, one line on stderr."""
    try:
        check(service, env)
    except ConfigError as exc:
        print(f"hive-{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def check(service: str, env: Mapping[str, str] | None = None) -> None:
    """Read every variable `service` reads (and the shared ones) once, so a bad value
    stops it at start, not when a loop first reads it an hour later."""
    for var in VARS.values():
        if service in var.services or ALL in var.services:
            var.get(env)
