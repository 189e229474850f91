"""Prometheus metrics of hive-deployer (all `hive_deployer_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

AGENTS = Gauge("hive_deployer_agents", "Agents by state.", ["state"])
ACTIONS = Counter("hive_deployer_actions_total", "Lifecycle actions, by verb and outcome.", ["verb", "outcome"])
DEPLOYS = Counter("hive_deployer_deploys_total", "Deploys by outcome.", ["outcome"])
DEPLOY_SECONDS = Histogram(
    "hive_deployer_deploy_duration_seconds", "Time from approval to deployed/failed.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600),
)
CRASHES = Counter("hive_deployer_crashes_total", "Agents that died without being stopped.", ["agent"])
RESTARTS = Counter("hive_deployer_restarts_total", "Automatic restarts after a crash.", ["agent"])
FAILURES = Counter("hive_deployer_failures_total", "Failures of the deployer's own work.", ["what"])
EVENTS_PRUNED = Counter("hive_deployer_events_pruned_total", "Rows dropped from agents' event dbs.", ["reason"])
SESSIONS = Counter("hive_deployer_sessions_total", "Sessions reaching a state.", ["status"])
