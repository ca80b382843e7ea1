"""Listeners for the two queues OpenKAT publishes the scheduler's events on (contracts §4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from kat_scheduler.config import Settings
from kat_scheduler.connectors.listeners.listener import Listener, M
from kat_scheduler.models import RawFileReceived, ScanProfileMutation

SCAN_PROFILE_MUTATIONS = "scan_profile_mutations"
RAW_FILE_RECEIVED = "raw_file_received"


class OpenKATListener(Listener[M]):
    """A listener of one of OpenKAT's event queues: subclasses name the queue and the message model."""

    default_queue: str
    message_model: type[M]

    def __init__(self, queue_uri: str, handler: Callable[[M], object], queue_name: str | None = None,
                 **options: Any) -> None:
        super().__init__(queue_uri, queue_name or self.default_queue, self.message_model, handler, **options)

    @classmethod
    def from_settings(cls, settings: Settings, handler: Callable[[M], object], **options: Any) -> Self:
        options.setdefault("prefetch_count", settings.rabbitmq_prefetch_count)
        return cls(settings.queue_uri, handler, **options)


class ScanProfileMutationListener(OpenKATListener[ScanProfileMutation]):
    """Octopoes' scan profile changes; a delete arrives with `value` None and is keyed on `primary_key`."""

    default_queue = SCAN_PROFILE_MUTATIONS
    message_model = ScanProfileMutation


class RawFileReceivedListener(OpenKATListener[RawFileReceived]):
    """Bytes' new raw files, which normalizers are scheduled for."""

    default_queue = RAW_FILE_RECEIVED
    message_model = RawFileReceived
