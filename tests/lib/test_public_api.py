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
