"""The API's settings, taken from kat_scheduler's settings (SCHEDULER_API_TOKEN,
SCHEDULER_API_MAX_BODY_BYTES, SCHEDULER_API_REAP_INTERVAL); tests build them directly."""

from __future__ import annotations

from dataclasses import dataclass

from kat_scheduler.config import Settings

MAX_PAGE_SIZE = 1000  # the largest `limit` any listing or pop accepts


@dataclass(frozen=True)
class ApiSettings:
    """api_token: a bearer token every call but /health and the OpenAPI document must carry (None or
    empty: the API is open). max_body_bytes: larger request bodies are refused with 413.
    reap_interval_seconds: how often a pop reaps expired leases first."""

    api_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    reap_interval_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiSettings:
        token = settings.api_token.get_secret_value() if settings.api_token is not None else None
        return cls(token, settings.api_max_body_bytes, settings.api_reap_interval)

    @property
    def token(self) -> str | None:
        """The token, or None when unset or empty."""
        return self.api_token or None
