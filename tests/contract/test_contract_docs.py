"""docs/asyncapi.yaml and docs/wire.md are what the registry renders, and the AsyncAPI
document is valid: checked here in Python and by the official parser (@asyncapi/parser)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hivewire import contract
from hivewire.contract import asyncapi
from hivewire.errors import ERROR_STATUS
from hivewire.wire import ops

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".tools" / "test" / "node_modules"
PARSE = Path(__file__).with_name("asyncapi_parse.mjs")


def test_generated_docs_are_up_to_date() -> None:
    assert contract.stale(ROOT) == [], "run: .venv/bin/python -m hivewire.contract --write"


def test_stale_docs_are_noticed(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    assert contract.stale(tmp_path) == ["docs/asyncapi.yaml", "docs/wire.md"]
    assert contract.write(tmp_path) == ["docs/asyncapi.yaml", "docs/wire.md"]
    assert contract.stale(tmp_path) == []
    (tmp_path / "docs" / "wire.md").write_text("edited by hand\n")
    assert contract.stale(tmp_path) == ["docs/wire.md"]


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def structure_problems(doc: dict[str, Any]) -> list[str]:
    """What breaks the AsyncAPI 3.0 document's structure (a minimal check, no node needed)."""
    problems: list[str] = []
    if doc.get("asyncapi") != "3.0.0":
        problems.append("asyncapi version")
    for ref in _refs(doc):
        try:
            _resolve(doc, ref)
        except (KeyError, AssertionError):
            problems.append(f"dangling {ref}")
    for name, schema in doc["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"schema {name}: {exc.message}")
    for oid, op in doc["operations"].items():
        ch = op["channel"]["$ref"]
        if op["action"] not in ("send", "receive"):
            problems.append(f"{oid}: action")
        for m in op["messages"]:
            if not m["$ref"].startswith(ch + "/messages/"):
                problems.append(f"{oid}: message {m['$ref']} not of its channel {ch}")
        if "reply" in op:
            rch = op["reply"]["channel"]["$ref"]
            problems += [f"{oid}: reply message not of its channel" for m in op["reply"]["messages"]
                         if not m["$ref"].startswith(rch + "/messages/")]
    for cid, ch in doc["channels"].items():
        address = ch.get("address")
        params = set(ch.get("parameters", {}))
        used = {p.strip("{}") for p in (address or "").split(".") if p.startswith("{")}
        if used != params:
            problems.append(f"channel {cid}: parameters {sorted(params)} but address uses {sorted(used)}")
    return problems


def test_asyncapi_document_matches_the_registry() -> None:
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert structure_problems(doc) == []
    assert set(doc["operations"]) == {o.id for o in ops.OPS}
    for o in ops.OPS:
        op = doc["operations"][o.id]
        ch = _resolve(doc, op["channel"]["$ref"])
        assert ch["address"] == o.subject
        assert op["x-hive-service"] == o.service.value
        msg = _resolve(doc, _resolve(doc, op["messages"][0]["$ref"])["$ref"])
        assert msg["payload"]["$ref"] == f"#/components/schemas/{o.request.__name__}"
        if o.kind is ops.Kind.REQUEST:
            assert op["action"] == "receive" and len(op["reply"]["messages"]) == 2
        else:
            assert op["action"] == "send" and "reply" not in op
    error = doc["components"]["schemas"]["ErrorReply"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorBody"
    wire_md = (ROOT / "docs" / "wire.md").read_text()
    assert all(f"`{code}`" in wire_md for code in ERROR_STATUS)
    assert all(f"`{o.subject}`" in wire_md for o in ops.OPS)


def test_the_structure_check_finds_breakage() -> None:
    good = asyncapi.document()
    bad = copy.deepcopy(good)
    first = next(iter(bad["operations"].values()))
    first["messages"] = [{"$ref": "#/channels/nowhere/messages/request"}]
    bad["channels"]["broker_send"]["parameters"] = {}
    assert len(structure_problems(bad)) >= 3  # dangling, not of its channel, parameters


def _parse(path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None or not (NODE_MODULES / "@asyncapi" / "parser").is_dir():
        pytest.skip("@asyncapi/parser is not installed: run scripts/install --test")
    return subprocess.run(["node", str(PARSE), str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HIVE_NODE_MODULES": str(NODE_MODULES)})


def test_the_official_asyncapi_parser_accepts_it() -> None:
    r = _parse(ROOT / "docs" / "asyncapi.yaml")
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    errors = [d for d in lines if d.get("severity") == 0]
    assert r.returncode == 0 and errors == [], r.stdout + r.stderr
    counts = lines[-1]
    assert counts["operations"] == len(ops.OPS)
    assert counts["channels"] == len(ops.OPS) + sum(o.kind is ops.Kind.REQUEST for o in ops.OPS)


def test_the_official_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    doc = asyncapi.document()
    doc["operations"]["broker.send"]["channel"] = {"$ref": "#/channels/no_such_channel"}
    del doc["components"]["schemas"]["SendRequest"]
    p = tmp_path / "broken.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = _parse(p)
    assert r.returncode == 1
    assert any(json.loads(line).get("severity") == 0 for line in r.stdout.splitlines() if line.startswith("{"))
