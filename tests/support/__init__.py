"""Shared test helpers: service processes, waiting, NATS discovery."""
