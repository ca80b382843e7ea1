"""What every OpenKAT service client shares: a connection pool, timeouts, bounded retries, errors.

The scheduler must carry on when a service is slow or down, so a call never hangs longer than its
timeout, transient failures (connection errors, timeouts, 5xx) are retried a bounded number of
times with exponential backoff, and whatever still fails surfaces as a `ServiceError` naming the
service and the URL. A 404 is an answer ("not there"), never an error.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError

from kat_scheduler.connectors.services.connection_pool import ConnectionPool
from kat_scheduler.models.inputs import first_problem, load_json

logger = logging.getLogger(__name__)

Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | None
Model = TypeVar("Model", bound=BaseModel)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A service's answer, read in full (the connection is back in the pool)."""

    status_code: int
    url: str
    body: bytes

    def json(self) -> Any:
        """The body as JSON, checked as every input from outside is (models/inputs.py); ValueError when it
        is not JSON or not fit."""
        return load_json(self.body)


class ServiceError(Exception):
    """A call to an OpenKAT service failed; the message names the service and the URL."""

    def __init__(self, service: str, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{service} at {url}: {reason}")
        self.service = service
        self.url = url
        self.reason = reason
        self.status = status


class ServiceUnavailable(ServiceError):
    """The service did not answer usefully (connection refused, timeout, 5xx), even after retries."""


class HTTPServiceClient:
    """A JSON-over-HTTP client with one connection pool, timeouts, retries and a request counter.

    The transport is connection_pool.ConnectionPool (http.client with keep-alive): see there why.

    `retries` is the number of extra attempts after the first one; the n-th retry waits
    `backoff * 2**(n-1)` seconds (capped at `max_backoff`).
    """

    service_name = "service"

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        pool_size: int = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        # OpenKAT's services are internal: connections go straight to them, no proxy.
        self.pool = ConnectionPool(self.base_url, pool_size, timeout)
        self._count_lock = threading.Lock()
        self._request_count = 0

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, retries and logins included."""
        return self._request_count

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # -- sending ---------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> Answer:
        """One call with retries on transient failures; answers any status below 500."""
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        target = f"/{path.lstrip('/')}{query}"  # below the base URL
        url = self.url(path) + query  # what messages name
        body = urlencode(data) if data is not None else None
        headers = {**FORM, **(headers or {})} if data is not None else dict(headers or {})
        attempts = 1 + (self.retries if retries is None else retries)
        reason = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
                logger.warning("%s: %s %s failed (%s), retry %d in %.2fs",
                               self.service_name, method, url, reason, attempt, delay)
                time.sleep(delay)
            with self._count_lock:
                self._request_count += 1
            try:
                status, answer = self.pool.request(method, target, body, headers)
            except TimeoutError:
                reason = f"no answer within {self.timeout}s"
                continue
            except (OSError, http.client.HTTPException) as error:  # refused, reset, closed mid-answer, ...
                reason = f"connection failed: {error.__class__.__name__}"
                continue
            if status >= 500:
                reason = f"HTTP {status}"
                continue
            return Answer(status, url, answer)
        raise ServiceUnavailable(self.service_name, url, f"{reason} after {attempts} attempt(s)")

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        data: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> Answer:
        """The hook subclasses override to add authentication; plain `_send` by default."""
        return self._send(method, path, params=params, data=data, retries=retries)

    def _get_json(self, path: str, params: Params = None, retries: int | None = None) -> Any | None:
        """GET and decode JSON; None on a 404, ServiceError on any other 4xx or undecodable body."""
        response = self._call("GET", path, params=params, retries=retries)
        return self._json_of(response)

    def _get_model(self, path: str, model: type[Model], params: Params = None) -> Model | None:
        """GET one object in `model`'s shape; None on a 404, ServiceError when the answer does not fit."""
        answer = self._get_json(path, params=params)
        if answer is None:
            return None
        try:
            return model.model_validate(answer)
        except (ValidationError, TypeError) as error:
            raise self._unexpected(path, error) from error

    def _items(self, path: str, model: type[Model], items: Iterable[Any]) -> list[Model]:
        """The items of a list answer in `model`'s shape. One unfit item (a hostile or broken record
        upstream) is left out with a log line rather than costing the whole answer."""
        valid = []
        for item in items:
            try:
                valid.append(model.model_validate(item))
            except ValidationError as error:
                logger.warning("%s %s: an item left out of the answer: %s", self.service_name, path,
                               first_problem(error))
        return valid

    def _json_of(self, response: Answer) -> Any | None:
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ServiceError(self.service_name, response.url, f"HTTP {response.status_code}",
                               response.status_code)
        try:
            return response.json()
        except ValueError as error:
            raise ServiceError(self.service_name, response.url, f"answer is not JSON: {error}") from error

    def _unexpected(self, path: str, error: Exception) -> ServiceError:
        """A ServiceError for an answer whose shape we cannot use."""
        return ServiceError(self.service_name, self.url(path), f"unexpected answer: {error}")

    def _healthy(self, path: str) -> bool:
        """True when `path` answers `{"healthy": true}`; one attempt, no authentication, never raises."""
        try:
            answer = self._json_of(self._send("GET", path, retries=0))
        except ServiceError as error:
            logger.warning("%s health check failed: %s", self.service_name, error)
            return False
        return isinstance(answer, dict) and answer.get("healthy") is True
