"""A small SSE reader for tests (httpx streaming)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    id: int | None
    kind: str
    data: Any


class SseReader:
    def __init__(self, response: httpx.Response) -> None:
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 5.0) -> Event:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Event:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line == "":
                if "data" in fields:
                    return Event(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                                 json.loads(fields["data"]))
                fields.clear()
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        raise EOFError("stream ended")

    async def until(self, pred: Any, timeout: float = 5.0) -> Event:
        while True:
            ev = await self.next(timeout)
            if pred(ev):
                return ev
