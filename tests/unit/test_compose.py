"""docker-compose.yml: valid for Compose, every service watched (a health check or a dependency), and
every variable it or its services use comes from .env.example, under a name kat_scheduler knows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kat_scheduler.config.settings import Settings, env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# Variables .env.example may set that are not kat_scheduler settings: read by other code we start.
OTHER_KNOWN = {"SCHEDULER_RUNNER_HOLD_SECONDS"}
OUR_PROCESSES = {"beat-1", "beat-2", "scheduler-worker", "runner", "flower", "api"}


def env_example() -> dict[str, str]:
    names: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f".env.example: {line!r} is not NAME=value"
            names[name.strip()] = value
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the structural checks need it")
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_docker_compose_config_accepts_the_file() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI here")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the docker compose plugin is not installed here ({(probe.stderr or probe.stdout).strip()})")
    checked = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr


def test_every_service_has_a_healthcheck_or_waits_for_one(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert OUR_PROCESSES | {"redis", "rabbitmq"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service or "depends_on" in service, f"{name}: neither healthcheck nor depends_on"
        for dependency, condition in service.get("depends_on", {}).items():
            assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
            assert condition == {"condition": "service_healthy"}


def test_redis_keeps_an_append_only_file_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_our_processes_run_the_documented_commands(compose: dict[str, Any]) -> None:
    commands = {name: " ".join(compose["services"][name]["command"]) for name in OUR_PROCESSES}
    assert commands["beat-1"].startswith("celery -A kat_scheduler beat")
    assert commands["beat-2"].startswith("celery -A kat_scheduler beat")
    assert commands["scheduler-worker"].startswith("celery -A kat_scheduler worker")
    assert commands["runner"].startswith("celery -A kat_scheduler.runner worker -Q boefjes,normalizers,reports -E")
    assert "flower --conf=flowerconfig.py" in commands["flower"]
    assert commands["api"] == "kat-scheduler api"
    for name in OUR_PROCESSES:
        service = compose["services"][name]
        assert service["build"] == "." and service["env_file"][0] == {"path": ".env.example"}


def test_every_variable_used_is_in_env_example_and_known(compose: dict[str, Any]) -> None:
    defined = env_example()
    interpolated = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert interpolated <= set(defined), f"not in .env.example: {sorted(interpolated - set(defined))}"
    for service in compose["services"].values():
        environment = service.get("environment", {})
        names = environment if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
        assert set(names) <= set(defined), f"not in .env.example: {sorted(set(names) - set(defined))}"
    settings = env_names()
    assert set(defined) <= settings | OTHER_KNOWN, f"unknown variables: {sorted(set(defined) - settings - OTHER_KNOWN)}"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env_example().items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.redis_url == "redis://redis:6379/0" and settings.logging_format == "json"


def test_the_compose_runner_writes_nothing_to_a_real_bytes_unless_asked(compose: dict[str, Any]) -> None:
    """The reference runner's simulated handler POSTs fake boefje meta and raw files to BYTES_API. A
    deployment from docker-compose.yml and .env.example points BYTES_API at the real Bytes, so its runner
    starts only under a profile, and its default handler fails each task instead of writing anything."""
    from kat_scheduler.runner.handlers import HandlerNotConfigured
    from kat_scheduler.runner.worker import load_handler

    assert compose["services"]["runner"].get("profiles") == ["reference-runner"]
    assert "SCHEDULER_RUNNER_HANDLER" not in env_example()
    assert "SCHEDULER_RUNNER_HANDLER" not in (compose["services"]["runner"].get("environment") or {})
    default = Settings(_env_file=None).runner_handler  # type: ignore[call-arg]
    with pytest.raises(HandlerNotConfigured, match="SCHEDULER_RUNNER_HANDLER is not set"):
        load_handler(default)("boefje", {"id": "t1", "organization": "org1"})
