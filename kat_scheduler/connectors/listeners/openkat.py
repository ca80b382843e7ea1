"""Listeners for the two queues OpenKAT publishes the scheduler's events on (contracts §4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kat_scheduler.config import Settings
from kat_scheduler.connectors.listeners.listener import Listener
from kat_scheduler.models import RawFileReceived, ScanProfileMutation

SCAN_PROFILE_MUTATIONS = "scan_profile_mutations"
RAW_FILE_RECEIVED = "raw_file_received"


class ScanProfileMutationListener(Listener[ScanProfileMutation]):
    """Octopoes' scan profile changes; a delete arrives with `value` None and is keyed on `primary_key`."""

    def __init__(
        self,
        queue_uri: str,
        handler: Callable[[ScanProfileMutation], object],
        queue_name: str = SCAN_PROFILE_MUTATIONS,
        **options: Any,
    ) -> None:
        super().__init__(queue_uri, queue_name, ScanProfileMutation, handler, **options)

    @classmethod
    def from_settings(
        cls, settings: Settings, handler: Callable[[ScanProfileMutation], object], **options: Any
    ) -> ScanProfileMutationListener:
        options.setdefault("prefetch_count", settings.rabbitmq_prefetch_count)
        return cls(settings.queue_uri, handler, **options)


class RawFileReceivedListener(Listener[RawFileReceived]):
    """Bytes' new raw files, which normalizers are scheduled for."""

    def __init__(
        self,
        queue_uri: str,
        handler: Callable[[RawFileReceived], object],
        queue_name: str = RAW_FILE_RECEIVED,
        **options: Any,
    ) -> None:
        super().__init__(queue_uri, queue_name, RawFileReceived, handler, **options)

    @classmethod
    def from_settings(
        cls, settings: Settings, handler: Callable[[RawFileReceived], object], **options: Any
    ) -> RawFileReceivedListener:
        options.setdefault("prefetch_count", settings.rabbitmq_prefetch_count)
        return cls(settings.queue_uri, handler, **options)
