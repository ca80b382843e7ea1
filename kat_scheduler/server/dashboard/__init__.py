"""The web dashboard served by `kat-scheduler api` at /dashboard (docs/operations.md, "The dashboard")."""

from kat_scheduler.server.dashboard.routes import router

__all__ = ["router"]
