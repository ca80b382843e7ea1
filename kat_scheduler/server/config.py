"""The API's own settings. They belong in kat_scheduler/config/settings.py; until they move there, the
server reads them here under the names they will keep."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_PAGE_SIZE = 1000  # the largest `limit` any listing or pop accepts


class ApiSettings(BaseSettings):
    """SCHEDULER_API_TOKEN: a bearer token every call but /health and the OpenAPI document must carry
    (unset: the API is open). SCHEDULER_API_MAX_BODY_BYTES: larger request bodies are refused with 413."""

    model_config = SettingsConfigDict(env_file=None, case_sensitive=False, extra="ignore", populate_by_name=True)

    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SCHEDULER_API_TOKEN"))
    max_body_bytes: int = Field(1024 * 1024, gt=0, validation_alias=AliasChoices("SCHEDULER_API_MAX_BODY_BYTES"))
    reap_interval_seconds: float = Field(
        1.0, ge=0, validation_alias=AliasChoices("SCHEDULER_API_REAP_INTERVAL")
    )

    @property
    def token(self) -> str | None:
        """The token, or None when unset or empty."""
        if self.api_token is None or not self.api_token.get_secret_value():
            return None
        return self.api_token.get_secret_value()
