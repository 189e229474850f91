"""The public surface of hivewire is exactly what __all__ says (changes are deliberate)."""

import hivewire

EXPECTED = {
    "AGENT_NAME_RE", "BROADCAST", "MANAGER", "OPERATOR", "BatchEndpoint", "Context", "Database", "DatabaseSpec",
    "Endpoint",
    "HiveClient", "HiveError", "MemoryTransport", "MicroService", "Migration", "Migrations", "Msg", "NatsServer",
    "NatsTransport", "Settings", "Transport", "__version__", "codec", "configure_logging", "connect", "connect_nats",
    "ensure_columns", "is_agent_name", "run_service", "serve", "serve_metrics", "subjects", "validate_agent_name",
    "wire",
}


def test_all_is_the_public_surface() -> None:
    assert set(hivewire.__all__) == EXPECTED
    assert len(hivewire.__all__) == len(EXPECTED)
    for name in hivewire.__all__:
        assert hasattr(hivewire, name), name


# --- the public modules ---------------------------------------------------------------
import ast  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

PUBLIC_MODULES = {
    "agentenv", "cli.app", "cli.up", "cli.upready", "codec", "config", "confine", "db", "errors", "hostauth", "logs",
    "migrations", "names", "nats_transport", "natsauth", "procs", "promsd", "runner", "safegit", "service",
    "settings", "subjects", "tasks", "tls", "transport", "wire",
}


def documented_public_modules() -> set[str]:
    doc = hivewire.__doc__ or ""
    block = doc.split("Public modules:\n", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in block.splitlines() if line.strip()}


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def service_imports_of_hivewire() -> dict[str, set[str]]:
    """hivewire module (relative, e.g. `cli.app`) -> the service files importing it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "services").glob("*/hive_*/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "hivewire" or node.module.startswith("hivewire."):
                    # `from hivewire.cli import upready` imports a module; `from hivewire.db import connect`
                    # a name of one; `from hivewire import Database`, a name of the public surface
                    names = [
                        f"{node.module}.{a.name}" if is_module(f"{node.module}.{a.name}") else node.module
                        for a in node.names
                    ]
                    names = [n for n in names if n != "hivewire"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("hivewire.")]
            for name in names:
                found.setdefault(name.removeprefix("hivewire."), set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_docstring_lists_the_public_modules() -> None:
    assert documented_public_modules() == PUBLIC_MODULES
    for mod in PUBLIC_MODULES:
        importlib.import_module(f"hivewire.{mod}")


def test_services_import_only_public_modules() -> None:
    imported = service_imports_of_hivewire()
    assert "errors" in imported  # the scan sees the services
    internal = {
        mod: sorted(files) for mod, files in imported.items()
        if not any(mod == pub or mod.startswith(pub + ".") for pub in PUBLIC_MODULES)
    }
    assert internal == {}, f"services import internal hivewire modules (make them public or stop): {internal}"
