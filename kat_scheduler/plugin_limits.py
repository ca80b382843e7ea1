"""Plugin limits across the queues: every queue keeps its own copy of the limits its claims check
(queues/limits.py, queue.lua), and these functions keep the copies the same.

A limit comes from SCHEDULER_PLUGIN_LIMITS, which the beat leader applies when it starts to lead and
every SCHEDULER_ORGANISATION_REFRESH_SECONDS, or from the API and the CLI, which apply at once. A limit
set or deleted through the API (or the CLI) wins over the configuration until the configuration is
changed by hand in Redis: a restart with the old configuration does not undo what an operator decided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kat_scheduler.context import AppContext
from kat_scheduler.queues.limits import LimitState, PluginLimit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PluginLimitReport:
    plugin_id: str
    limit: PluginLimit
    states: dict[str, LimitState]  # kind -> the plugin in that queue

    @property
    def in_flight(self) -> int:
        return sum(state.in_flight for state in self.states.values())

    @property
    def queued(self) -> int:
        return sum(state.queued for state in self.states.values())

    @property
    def held(self) -> int:
        return sum(state.held for state in self.states.values())


def set_limit(context: AppContext, plugin_id: str, limit: PluginLimit) -> None:
    for queue in context.queues.values():
        queue.set_limit(plugin_id, limit)
    logger.info("plugin %s: limited to %s", plugin_id, describe(limit))


def delete_limit(context: AppContext, plugin_id: str) -> bool:
    """False when the plugin had no limit."""
    deleted = [queue.delete_limit(plugin_id) == "deleted" for queue in context.queues.values()]
    if any(deleted):
        logger.info("plugin %s: no longer limited", plugin_id)
    return any(deleted)


def reports(context: AppContext) -> list[PluginLimitReport]:
    """Every limited plugin with what it holds in each queue, by plugin id."""
    found: dict[str, tuple[PluginLimit, dict[str, LimitState]]] = {}
    for kind, queue in context.queues.items():
        for state in queue.limit_states():
            found.setdefault(state.plugin_id, (state.limit, {}))[1][kind] = state
    return [PluginLimitReport(plugin, limit, states) for plugin, (limit, states) in sorted(found.items())]


def apply_configured(context: AppContext) -> None:
    """SCHEDULER_PLUGIN_LIMITS into every queue; configured limits it no longer names are removed. Limits
    the API set or deleted stay as they are."""
    configured = context.settings.configured_limits()
    for queue in context.queues.values():
        for plugin_id, limit in configured.items():
            if queue.set_limit(plugin_id, limit, configured=True) == "set":
                logger.info("plugin %s: limited to %s (SCHEDULER_PLUGIN_LIMITS) on the %s queue", plugin_id,
                            describe(limit), queue.kind)
        for plugin_id in queue.configured_limits() - set(configured):
            queue.delete_limit(plugin_id, configured=True)


def describe(limit: PluginLimit) -> str:
    parts = [f"{limit.concurrency} at once"] if limit.concurrency is not None else []
    return ", ".join(parts + ([limit.rate] if limit.rate else []))
