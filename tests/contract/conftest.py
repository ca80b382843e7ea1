"""OpenKAT's own clients, as seen on the wire, against `kat-scheduler api` on the real Redis.

Each module serves the API in a process of its own (uvicorn, as deployed) and sends the requests that
Rocky's scheduler client and the boefje runner send, with their headers and bodies, then checks what
those clients check of the answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.factories.api_server import api_server_of_its_own


@pytest.fixture(scope="module")
def api_env() -> dict[str, str]:
    """Settings of the module's API server; a module overrides this fixture to change them."""
    return {}


@pytest.fixture(scope="module")
def api_base(api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with api_server_of_its_own(api_env, tmp_path_factory.mktemp("api"), "kat-contract") as base:
        yield base


@pytest.fixture
def http(api_base: str) -> Iterator[httpx.Client]:
    """A client as OpenKAT's clients make theirs: httpx with a base URL."""
    with httpx.Client(base_url=api_base, timeout=10) as client:
        yield client


@pytest.fixture
def org() -> str:
    """An organisation of each test's own, so that tests sharing a server never see each other's tasks."""
    return f"org-{uuid.uuid4().hex[:8]}"
