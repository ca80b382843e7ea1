"""Normalizer scheduling: each raw file a boefje saved is parsed by every enabled normalizer that
consumes one of its mime types, once per normalizer."""

from __future__ import annotations

import logging

from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, RawFileReceivedListener
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.models import NormalizerRef, NormalizerTask, Plugin, RawData, RawFileReceived
from kat_scheduler.queues import PushOutcome, PushResult
from kat_scheduler.rankers import RankingContext
from kat_scheduler.schedulers.base import Scheduler, Subscription, patiently, register

logger = logging.getLogger(__name__)


def failed_run(raw_data: RawData) -> bool:
    """A boefje that failed stores its error output under an `error/...` mime type."""
    return any(value.startswith("error/") for value in raw_data.mime_type_values)


@register
class NormalizerScheduler(Scheduler):
    kind = "normalizer"

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(RAW_FILE_RECEIVED, RawFileReceivedListener, self._patient_raw_file)]

    def _patient_raw_file(self, event: RawFileReceived) -> None:
        patiently(lambda: self.on_raw_file(event),
                  f"organisation {event.organization}: raw file {event.raw_data.id}")

    def on_raw_file(self, event: RawFileReceived) -> list[PushResult]:
        """Handle one `raw_file_received` message; returns what was pushed."""
        raw_data = event.raw_data
        organisation = raw_data.boefje_meta.organization
        if failed_run(raw_data):
            logger.info("organisation %s: raw file %s is a failed run (%s); no normalizers", organisation,
                        raw_data.id, ", ".join(raw_data.mime_type_values))
            return []
        normalizers = self.normalizers_for(organisation, raw_data)
        if not normalizers:
            return []
        score = self.ranker.rank(RankingContext(now_ms=self.now_ms()))
        tasks = [self.task_for(plugin, raw_data) for plugin in normalizers]
        results = self.queue.push_many([(task, score) for task in tasks])
        for task, result in zip(tasks, results, strict=True):
            if result.outcome is PushOutcome.QUEUED:
                logger.debug("task %s organisation %s: queued %s for raw file %s", task.id, organisation,
                             task.normalizer.id, raw_data.id, extra=task_fields(task.id, self.kind, organisation))
        return results

    def normalizers_for(self, organisation: str, raw_data: RawData) -> list[Plugin]:
        """Enabled normalizers consuming any of the file's mime types, each once, in a stable order."""
        found: dict[str, Plugin] = {}
        for mime_type in dict.fromkeys(raw_data.mime_type_values):
            for plugin in self.context.katalogus.get_normalizers_by_mime_type(organisation, mime_type):
                if plugin.type == "normalizer" and plugin.enabled:
                    found.setdefault(plugin.id, plugin)
        return list(found.values())

    @staticmethod
    def task_for(plugin: Plugin, raw_data: RawData) -> NormalizerTask:
        ref = NormalizerRef(id=plugin.id, name=plugin.name, version=plugin.version)
        return NormalizerTask(normalizer=ref, raw_data=raw_data)

    def push_manual(self, organisation: str, normalizer_id: str, raw_file_id: str) -> PushResult:
        """A person asked to (re)parse a raw file: first in line, but never twice at once."""
        plugin = self.context.katalogus.get_plugin(organisation, normalizer_id)
        if plugin is None or plugin.type != "normalizer":
            raise LookupError(f"organisation {organisation} has no normalizer {normalizer_id!r}")
        raw_data = self.context.bytes.get_raw_meta(raw_file_id)
        if raw_data is None or raw_data.boefje_meta.organization != organisation:
            raise LookupError(f"organisation {organisation} has no raw file {raw_file_id!r}")
        task = self.task_for(plugin, raw_data)
        return self.queue.push(task, self.ranker.rank(RankingContext(now_ms=self.now_ms(), manual=True)))
