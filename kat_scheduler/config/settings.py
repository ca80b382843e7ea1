"""Settings, read from the environment under the names OpenKAT deployments already set."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kat_scheduler.kinds import KINDS, HandOff
from kat_scheduler.queues.limits import BadLimit, PluginLimit


class SettingsError(Exception):
    """A setting has a value kat_scheduler cannot use; the message names the variable."""


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Every knob of kat_scheduler. The environment variable of each field is its alias."""

    model_config = SettingsConfigDict(
        env_file=None, case_sensitive=False, extra="ignore", populate_by_name=True
    )

    # OpenKAT's services
    katalogus_api: str = Field("http://localhost:8003", validation_alias=_env("KATALOGUS_API"))
    octopoes_api: str = Field("http://localhost:8001", validation_alias=_env("OCTOPOES_API"))
    bytes_api: str = Field("http://localhost:8002", validation_alias=_env("BYTES_API"))
    bytes_username: str = Field("bytes", validation_alias=_env("BYTES_USERNAME"))
    bytes_password: str = Field("bytes", validation_alias=_env("BYTES_PASSWORD"))
    queue_uri: str = Field("amqp://guest:guest@localhost:5672/%2F", validation_alias=_env("QUEUE_URI"))
    katalogus_request_timeout: float = Field(
        10.0, gt=0, validation_alias=_env("SCHEDULER_KATALOGUS_REQUEST_TIMEOUT")
    )
    octopoes_request_timeout: float = Field(
        10.0, gt=0, validation_alias=_env("SCHEDULER_OCTOPOES_REQUEST_TIMEOUT")
    )
    bytes_request_timeout: float = Field(10.0, gt=0, validation_alias=_env("SCHEDULER_BYTES_REQUEST_TIMEOUT"))
    katalogus_cache_ttl: float = Field(30.0, ge=0, validation_alias=_env("SCHEDULER_KATALOGUS_CACHE_TTL"))
    rabbitmq_prefetch_count: int = Field(100, ge=1, validation_alias=_env("SCHEDULER_RABBITMQ_PREFETCH_COUNT"))

    # Redis and Celery
    redis_url: str = Field("redis://localhost:6379/0", validation_alias=_env("SCHEDULER_REDIS_URL"))
    broker_url: str | None = Field(None, validation_alias=_env("CELERY_BROKER_URL"))
    key_prefix: str = Field("kat", min_length=1, validation_alias=_env("SCHEDULER_KEY_PREFIX"))

    # The queues
    grace_period: int = Field(86400, ge=0, validation_alias=_env("SCHEDULER_PQ_GRACE_PERIOD"))
    pq_maxsize: int = Field(0, ge=0, validation_alias=_env("SCHEDULER_PQ_MAXSIZE"))
    lease_seconds: float = Field(300.0, gt=0, validation_alias=_env("SCHEDULER_LEASE_SECONDS"))
    pull_lease_seconds: float = Field(14400.0, gt=0, validation_alias=_env("SCHEDULER_PULL_LEASE_SECONDS"))
    max_attempts: int = Field(3, ge=1, validation_alias=_env("SCHEDULER_MAX_ATTEMPTS"))
    task_retention: int = Field(7 * 86400, gt=0, validation_alias=_env("SCHEDULER_TASK_RETENTION"))
    dead_letter_retention: int = Field(30 * 86400, ge=0, validation_alias=_env("SCHEDULER_DEAD_LETTER_RETENTION"))
    filtered_claim_scan: int = Field(1000, ge=1, validation_alias=_env("SCHEDULER_FILTERED_CLAIM_SCAN"))

    # Dispatch to the runners (kat-contracts.md §6). Each kind's task name, Celery queue and slots are
    # SCHEDULER_<KIND>_TASK_NAME, _CELERY_QUEUE and _SLOTS (kinds/registry.py); `hand_offs` overrides
    # them per kind in code ({"boefje": {"celery_queue": "x"}}), for tests and the demo.
    hand_offs: dict[str, dict[str, Any]] = Field(default_factory=dict, validation_alias=_env("SCHEDULER_HAND_OFFS"))
    plugin_limits: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                     validation_alias=_env("SCHEDULER_PLUGIN_LIMITS"))
    organisation_weights: dict[str, Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=dict, validation_alias=_env("SCHEDULER_ORGANISATION_WEIGHTS"))
    dispatcher_enabled: bool = Field(True, validation_alias=_env("SCHEDULER_DISPATCHER_ENABLED"))
    runner_handler: str = Field(
        "kat_scheduler.runner.handlers:unconfigured", validation_alias=_env("SCHEDULER_RUNNER_HANDLER")
    )

    # Scheduling (the beat and the event listeners)
    listeners_enabled: bool = Field(True, validation_alias=_env("SCHEDULER_LISTENERS_ENABLED"))
    beat_lease_seconds: float = Field(15.0, gt=0, validation_alias=_env("SCHEDULER_BEAT_LEASE_SECONDS"))
    beat_tick_seconds: float = Field(1.0, gt=0, validation_alias=_env("SCHEDULER_BEAT_TICK_SECONDS"))
    schedule_batch_size: int = Field(500, ge=1, validation_alias=_env("SCHEDULER_SCHEDULE_BATCH_SIZE"))
    schedule_jitter_seconds: int = Field(3600, ge=0, validation_alias=_env("SCHEDULER_SCHEDULE_JITTER"))
    organisation_refresh_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("SCHEDULER_ORGANISATION_REFRESH_SECONDS")
    )

    # The HTTP API and logging
    api_host: str = Field("0.0.0.0", validation_alias=_env("SCHEDULER_API_HOST"))
    api_port: int = Field(8000, ge=0, le=65535, validation_alias=_env("SCHEDULER_API_PORT"))
    api_token: SecretStr | None = Field(None, validation_alias=_env("SCHEDULER_API_TOKEN"))
    api_max_body_bytes: int = Field(1024 * 1024, gt=0, validation_alias=_env("SCHEDULER_API_MAX_BODY_BYTES"))
    api_reap_interval: float = Field(1.0, ge=0, validation_alias=_env("SCHEDULER_API_REAP_INTERVAL"))
    api_access_log: bool = Field(False, validation_alias=_env("SCHEDULER_API_ACCESS_LOG"))
    logging_format: Literal["text", "json"] = Field("text", validation_alias=_env("SCHEDULER_LOGGING_FORMAT"))
    debug: bool = Field(False, validation_alias=_env("DEBUG"))

    @model_validator(mode="after")
    def _hand_offs_readable(self) -> Settings:
        for kind in KINDS:
            self.hand_off(kind)  # raises ValueError naming the variable
        return self

    @model_validator(mode="after")
    def _plugin_limits_readable(self) -> Settings:
        self.configured_limits()  # raises ValueError naming the variable
        return self

    def configured_limits(self) -> dict[str, PluginLimit]:
        """SCHEDULER_PLUGIN_LIMITS: plugin id -> its limit."""
        try:
            return {plugin: PluginLimit(**spec) for plugin, spec in self.plugin_limits.items()}
        except (BadLimit, TypeError) as error:
            raise ValueError(f"SCHEDULER_PLUGIN_LIMITS: {error} (a plugin's limit is "
                             '{"concurrency": N, "rate": "N/s|m|h|d"})') from None

    def hand_off(self, kind: str) -> HandOff:
        """Where `kind`'s tasks go: its defaults, the environment, then `hand_offs`."""
        return KINDS[kind].hand_off(self.hand_offs.get(kind))

    @model_validator(mode="after")
    def _broker_for_cluster(self) -> Settings:
        if self.broker_url is None and self.redis_url.split("://", 1)[0].endswith(("+cluster", "+sentinel")):
            raise ValueError("CELERY_BROKER_URL must be set when SCHEDULER_REDIS_URL names a Redis Cluster or "
                             "Sentinel: Celery cannot use those URLs as its broker")
        return self

    @property
    def celery_broker_url(self) -> str:
        """Celery's broker: CELERY_BROKER_URL when set, else the scheduler's own Redis."""
        return self.broker_url or self.redis_url


def env_name(field_name: str) -> str:
    """The environment variable that sets a field."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field_name.upper()


def env_names() -> set[str]:
    """Every environment variable kat_scheduler reads: the fields' and each kind's hand-off."""
    names = {env_name(name) for name in Settings.model_fields}
    return names | {kind.env_name(field) for kind in KINDS.values() for field in HandOff.model_fields}


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises SettingsError naming the variable and what it expected."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            if not issue["loc"]:  # a rule across settings: its message names them
                problems.append(issue["msg"].removeprefix("Value error, "))
                continue
            field = str(issue["loc"][0])
            name = env_name(field) if field in Settings.model_fields else field
            problems.append(f"{name}: {issue['msg']} (got {issue.get('input')!r})")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
