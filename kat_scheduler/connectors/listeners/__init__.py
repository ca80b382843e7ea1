"""Event listeners: RabbitMQ consumers of OpenKAT's queues, and an in-process bus for the demo."""

from kat_scheduler.connectors.listeners.bus import DeadLetter, InProcessBus
from kat_scheduler.connectors.listeners.decoding import MalformedMessage
from kat_scheduler.connectors.listeners.listener import Listener
from kat_scheduler.connectors.listeners.openkat import (
    RAW_FILE_RECEIVED,
    SCAN_PROFILE_MUTATIONS,
    RawFileReceivedListener,
    ScanProfileMutationListener,
)

__all__ = [
    "RAW_FILE_RECEIVED",
    "SCAN_PROFILE_MUTATIONS",
    "DeadLetter",
    "InProcessBus",
    "Listener",
    "MalformedMessage",
    "RawFileReceivedListener",
    "ScanProfileMutationListener",
]
