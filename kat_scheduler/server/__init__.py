"""The HTTP API OpenKAT's web UI and pull-based runners use (kat-contracts.md §7; docs/api.md)."""

from kat_scheduler.server.app import create_app

__all__ = ["create_app"]
