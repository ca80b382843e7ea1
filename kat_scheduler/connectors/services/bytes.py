"""Bytes: when did a boefje last run on an OOI (contracts §3). Needs a bearer token."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from kat_scheduler.config import Settings
from kat_scheduler.connectors.services.base import Answer, HTTPServiceClient, Params, ServiceError
from kat_scheduler.models import BoefjeMeta, RawData


class BytesClient(HTTPServiceClient):
    """Bytes over HTTP. Logs in lazily; a 401 (expired or revoked token) logs in again and retries once."""

    service_name = "Bytes"

    def __init__(
        self, base_url: str, username: str, password: str, timeout: float = 10.0, **retry_options: Any
    ) -> None:
        super().__init__(base_url, timeout, **retry_options)
        self.username = username
        self._password = password
        self._token: str | None = None
        self._login_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> BytesClient:
        return cls(settings.bytes_api, settings.bytes_username, settings.bytes_password,
                   settings.bytes_request_timeout)

    def health(self) -> bool:
        return self._healthy("/health")

    def login(self) -> str:
        """Fetch a new token; ServiceError when Bytes refuses the credentials."""
        response = self._send("POST", "/token", data={"username": self.username, "password": self._password})
        if response.status_code >= 400:
            raise ServiceError(self.service_name, response.url,
                               f"login as {self.username!r} refused: HTTP {response.status_code}",
                               response.status_code)
        try:
            token = str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError) as error:
            raise self._unexpected("/token", error) from error
        self._token = token
        return token

    def get_last_run(self, organisation: str, boefje_id: str, input_ooi: str | None) -> BoefjeMeta | None:
        """The newest run of `boefje_id` on `input_ooi` that Bytes knows of, or None."""
        path = "/bytes/boefje_meta"
        params: dict[str, Any] = {"boefje_id": boefje_id, "organization": organisation,
                                  "limit": 1, "descending": "true"}
        if input_ooi is not None:
            params["input_ooi"] = input_ooi
        answer = self._get_json(path, params=params)
        if not answer:
            return None
        try:
            return BoefjeMeta.model_validate(answer[0])
        except (ValidationError, KeyError, TypeError) as error:
            raise self._unexpected(path, error) from error

    def get_last_runs(self, organisation: str, input_ooi: str, boefje_ids: Iterable[str],
                      limit: int = 100) -> dict[str, BoefjeMeta]:
        """The newest run of each of `boefje_ids` on `input_ooi`, in one request when Bytes' answer
        (its newest `limit` runs on the object) covers them all; the rest are asked one by one."""
        wanted = set(boefje_ids)
        path = "/bytes/boefje_meta"
        params = {"input_ooi": input_ooi, "organization": organisation, "limit": limit, "descending": "true"}
        answer = self._get_json(path, params=params) or []
        newest: dict[str, BoefjeMeta] = {}
        try:
            for item in answer:
                meta = BoefjeMeta.model_validate(item)
                if meta.boefje.id in wanted:
                    newest.setdefault(meta.boefje.id, meta)
        except (ValidationError, TypeError) as error:
            raise self._unexpected(path, error) from error
        if len(answer) >= limit:  # the answer may have been cut short: ask for the missing ones
            for boefje_id in wanted - newest.keys():
                if (found := self.get_last_run(organisation, boefje_id, input_ooi)) is not None:
                    newest[boefje_id] = found
        return newest

    def get_raw_meta(self, raw_id: str) -> RawData | None:
        """A raw file's metadata (its boefje run and mime types), or None when Bytes has no such file."""
        return self._get_model(f"/bytes/raw/{quote(raw_id, safe='')}/meta", RawData)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        data: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> Answer:
        token = self._current_token()
        response = self._send(method, path, params=params, data=data, retries=retries,
                              headers={"Authorization": f"bearer {token}"})
        if response.status_code != 401:
            return response
        token = self._relogin(token)
        return self._send(method, path, params=params, data=data, retries=retries,
                          headers={"Authorization": f"bearer {token}"})

    def _current_token(self) -> str:
        with self._login_lock:
            return self._token or self.login()

    def _relogin(self, rejected: str) -> str:
        # Several threads can see the same 401; only the first logs in again.
        with self._login_lock:
            if self._token is not None and self._token != rejected:
                return self._token
            return self.login()
