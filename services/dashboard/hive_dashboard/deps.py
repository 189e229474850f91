"""Dependency providers: the app-scoped objects the lifespan puts on `app.state`."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from hive_dashboard.config import DashboardConfig
from hive_dashboard.hub import Hub
from hive_dashboard.overview import OverviewBuilder
from hive_dashboard.upstream import Upstream


def _up(state: State) -> Upstream:
    up: Upstream = state.up
    return up


def _hub(state: State) -> Hub:
    hub: Hub = state.hub
    return hub


def _cfg(state: State) -> DashboardConfig:
    cfg: DashboardConfig = state.cfg
    return cfg


def _overview(state: State) -> OverviewBuilder:
    ob: OverviewBuilder = state.overview
    return ob


DEPENDENCIES = {
    "up": Provide(_up, sync_to_thread=False),
    "hub": Provide(_hub, sync_to_thread=False),
    "cfg": Provide(_cfg, sync_to_thread=False),
    "ob": Provide(_overview, sync_to_thread=False),
}


# Typed, explicit dependency markers for handler signatures.
UpDep = NamedDependency[Upstream]
HubDep = NamedDependency[Hub]
CfgDep = NamedDependency[DashboardConfig]
OverviewDep = NamedDependency[OverviewBuilder]
