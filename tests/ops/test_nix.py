"""nix/: every file parses; the flake exposes the modules the deployer's meta
flake imports, and those modules declare every option the meta flake and the
agent config template set. (No nixpkgs here: modules are evaluated against a
stub `lib`, enough to list their options; nothing is built.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NIX = REPO / "nix"
INSTANTIATE = shutil.which("nix-instantiate") or "/usr/bin/nix-instantiate"

pytestmark = pytest.mark.skipif(not Path(INSTANTIATE).exists(), reason="nix-instantiate not installed")

STUB_LIB = """
  lib = rec {
    mkOption = o: o // { _opt = true; };
    mkEnableOption = d: { _opt = true; description = d; };
    mkIf = c: v: v; mkForce = v: v; optional = c: v: if c then [ v ] else [ ];
    recursiveUpdate = a: b: a // builtins.mapAttrs (n: v:
      if builtins.isAttrs v && a ? ${n} && builtins.isAttrs a.${n} then recursiveUpdate a.${n} v else v) b;
    elem = x: l: builtins.elem x l;
    types = { str = "str"; bool = "bool"; port = "port"; package = "package"; path = "path";
      strMatching = r: "strMatching"; attrsOf = t: "attrsOf"; listOf = t: "listOf"; enum = l: "enum";
      nullOr = t: "nullOr"; };
  };
"""


def nix_eval(expr: str) -> str:
    r = subprocess.run([INSTANTIATE, "--eval", "--strict", "-E", expr], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def names(nix_list: str) -> set[str]:
    return set(re.findall(r'"([^"]+)"', nix_list))


def test_every_nix_file_parses() -> None:
    files = sorted(NIX.glob("**/*.nix"))
    assert {f.name for f in files} >= {"flake.nix", "module.nix", "agent-base.nix", "manager-base.nix",
                                       "packages.nix"}
    for f in files:
        r = subprocess.run([INSTANTIATE, "--parse", str(f)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{f}: {r.stderr}"


def test_a_broken_file_fails_to_parse(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nix"
    bad.write_text("{ services.hive.enable = true; ")
    assert subprocess.run([INSTANTIATE, "--parse", str(bad)], capture_output=True, timeout=60).returncode != 0


def test_flake_exposes_host_and_agent_modules() -> None:
    out = nix_eval(f"builtins.attrNames ((import {NIX}/flake.nix).outputs {{ self = {{}}; nixpkgs = {{}}; }})"
                   ".nixosModules")
    assert names(out) >= {"default", "agentBase", "managerBase"}


def _agent_options(module: str) -> set[str]:
    """Options under hive.agent declared by `module` or the modules it imports."""
    cfg = ('{ hive.agent = { name = "alice"; deployed = ""; environment = {}; extraPackages = []; '
           'natsUrl = ""; model = ""; manager = false; }; }')
    expr = (f"let {STUB_LIB} args = {{ config = {cfg}; inherit lib; pkgs = {{}}; }}; "
            f"opts = m: (m.options.hive.agent or {{}}) // "
            f"builtins.foldl' (a: i: a // opts (i args)) {{}} (m.imports or []); "
            f"in builtins.attrNames (opts ((import {NIX}/{module} {{ self = {{}}; }}) args))")
    return names(nix_eval(expr))


def test_rendered_meta_flake_references_the_base_modules(tmp_path: Path) -> None:
    repos = pytest.importorskip("hive_deployer.repos")
    entries = [repos.MetaEntry(name=n, tag=f"deployed/{i}", sha="a" * 40, applied=tmp_path / "applied" / n)
               for i, n in enumerate(("manager", "alice"), 1)]
    meta = repos.render_meta(entries, "path:/etc/hive?dir=nix")
    (tmp_path / "flake.nix").write_text(meta)
    r = subprocess.run([INSTANTIATE, "--parse", str(tmp_path / "flake.nix")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    flake_modules = names(nix_eval(
        f"builtins.attrNames ((import {NIX}/flake.nix).outputs {{ self = {{}}; nixpkgs = {{}}; }}).nixosModules"))
    used = set(re.findall(r"\bhive\.nixosModules\.([A-Za-z]+)", meta))
    assert used == {"agentBase", "managerBase"} and used <= flake_modules
    # Every hive.agent.* option the meta flake or the agent template sets is declared by the base module.
    declared = _agent_options("agent-base.nix")
    assert _agent_options("manager-base.nix") == declared
    set_by_meta = set(re.findall(r"\bhive\.agent\.([a-zA-Z]+)\s*=", meta))
    set_by_template = set(re.findall(r"\bhive\.agent\.([a-zA-Z]+)\s*=", repos.AGENT_NIX))
    assert set_by_meta and set_by_template
    assert set_by_meta | set_by_template <= declared, (set_by_meta | set_by_template) - declared


def test_host_module_options_and_units() -> None:
    cfg = ('{ services.hive = { enable = true; package = "/hive"; user = "hive"; group = "hive"; logLevel = "info"; '
           'nats = { enable = true; port = 4222; url = ""; }; '
           'broker = { enable = true; metricsAddr = "127.0.0.1:9411"; environment = {}; }; '
           'deployer = { enable = true; metricsAddr = "127.0.0.1:9412"; environment = {}; runtime = "bwrap"; }; '
           'backup = { enable = true; metricsAddr = "127.0.0.1:9413"; environment = {}; }; '
           'dashboard = { enable = true; metricsAddr = ""; environment = {}; addr = "127.0.0.1:8000"; '
           'operatorTokenFile = null; }; }; }')
    pkgs = ('{ system = "x86_64-linux"; nats-server = "/nats"; coreutils = "/cu"; git = "g"; nix = "n"; '
            'bubblewrap = "b"; nixos-container = "nc"; util-linux = "u"; }')
    base = (f"let {STUB_LIB} m = (import {NIX}/module.nix {{ self = {{ packages.x86_64-linux.hive = \"/hive\"; }}; }}) "
            f"{{ config = {cfg}; inherit lib; pkgs = {pkgs}; }}; in ")
    opts = names(nix_eval(base + "builtins.attrNames m.options.services.hive"))
    assert opts >= {"enable", "package", "nats", "broker", "deployer", "dashboard", "backup"}
    units = names(nix_eval(base + "builtins.attrNames m.config.systemd.services"))
    assert units == {"hive-nats-config", "hive-nats", "hive-broker", "hive-deployer", "hive-dashboard", "hive-backup"}
    dep = base + "m.config.systemd.services.hive-deployer.serviceConfig."
    assert nix_eval(dep + "RuntimeDirectoryPreserve") == '"yes"'
    assert nix_eval(dep + "StateDirectory") == '"hive"'
    assert nix_eval(dep + "ExecStart") == '"/hive/bin/hive-deployer"'
    for svc in ("broker", "backup", "dashboard"):
        sc = base + f"m.config.systemd.services.hive-{svc}."
        assert nix_eval(sc + "serviceConfig.ProtectSystem") == '"strict"'
        assert nix_eval(sc + "serviceConfig.NoNewPrivileges") == "true"
        assert nix_eval(sc + "environment.HIVE_HOME") == '"/var/lib/hive"'
        assert nix_eval(sc + "environment.HIVE_NATS_CREDS") == f'"/var/lib/hive/nats/creds/svc_{svc}.env"'
    nats = nix_eval(base + "m.config.systemd.services.hive-nats.serviceConfig.ExecStart")
    assert "-c /var/lib/hive/nats/nats-server.conf" in nats and " -js " in nats
    # Console scripts the units start exist.
    text = "\n".join(p.read_text() for p in REPO.glob("services/*/pyproject.toml"))
    for svc in ("broker", "deployer", "dashboard", "backup", "harness"):
        assert f'hive-{svc} = "hive_{svc}.__main__:main"' in text
