"""Weighted turns between organisations: SCHEDULER_ORGANISATION_WEIGHTS, which the beat leader writes
into every queue when it starts to lead and every SCHEDULER_ORGANISATION_REFRESH_SECONDS. An
organisation of weight w is served w times in a row per turn (docs/fairness.md, queue.lua's
place_org); the others weigh 1."""

from __future__ import annotations

import logging

from kat_scheduler.context import AppContext

logger = logging.getLogger(__name__)


def apply_configured(context: AppContext) -> None:
    weights = context.settings.organisation_weights
    for queue in context.queues.values():
        if queue.set_weights(weights) == "set":
            logger.info("%s queue: organisation weights now %s", queue.kind, weights or "all 1")
