"""Katalogus: which organisations exist and which plugins each of them has (contracts §1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from kat_scheduler.config import Settings
from kat_scheduler.connectors.services.base import HTTPServiceClient
from kat_scheduler.connectors.services.cache import TTLCache
from kat_scheduler.models import Organisation, Plugin

PluginKey = tuple[str, str | None, str | None]


class KatalogusClient(HTTPServiceClient):
    """Katalogus over HTTP. Plugin lists are cached per (organisation, plugin type, consumes)."""

    service_name = "Katalogus"

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        cache_ttl: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        **retry_options: Any,
    ) -> None:
        super().__init__(base_url, timeout, **retry_options)
        self._plugins: TTLCache[list[Plugin]] = TTLCache(cache_ttl, clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> KatalogusClient:
        return cls(settings.katalogus_api, settings.katalogus_request_timeout, settings.katalogus_cache_ttl)

    def clear_cache(self) -> None:
        """Forget every cached plugin list, e.g. after a plugin was enabled."""
        self._plugins.clear()

    def health(self) -> bool:
        return self._healthy("/health")

    # -- organisations ---------------------------------------------------------------------------

    def get_organisations(self) -> list[Organisation]:
        path = "/v1/organisations"
        answer = self._get_json(path)
        if answer is None:
            return []
        try:
            # Katalogus answers an object keyed by organisation id, not a list.
            return self._items(path, Organisation, dict(answer).values())
        except (TypeError, ValueError) as error:
            raise self._unexpected(path, error) from error

    def get_organisation(self, organisation: str) -> Organisation | None:
        return self._get_model(f"/v1/organisations/{quote(organisation, safe='')}", Organisation)

    def get_duplicate_organisations(self, organisation: str, boefje_id: str) -> list[str]:
        """The organisations whose enabled config of the boefje equals this organisation's, and that
        deduplicate (Katalogus applies both flags: `/v1/configs?with_duplicates=true`)."""
        path = "/v1/configs"
        answer = self._get_json(path, params={"organisation_id": organisation, "boefje_id": boefje_id,
                                              "enabled": "true", "with_duplicates": "true"})
        if not answer:
            return []
        try:
            duplicates = answer[0].get("duplicates") or []
            return sorted({str(d["organisation_id"]) for d in duplicates} - {organisation})
        except (AttributeError, KeyError, IndexError, TypeError) as error:
            raise self._unexpected(path, error) from error

    # -- plugins ---------------------------------------------------------------------------------

    def get_plugins(self, organisation: str) -> list[Plugin]:
        return self._cached_plugins((organisation, None, None))

    def get_boefjes_by_ooi_type(self, organisation: str, ooi_type: str) -> list[Plugin]:
        """Boefjes consuming `ooi_type`, enabled and disabled alike: callers decide what to run."""
        return self._cached_plugins((organisation, "boefje", ooi_type))

    def get_normalizers_by_mime_type(self, organisation: str, mime_type: str) -> list[Plugin]:
        return self._cached_plugins((organisation, "normalizer", mime_type))

    def get_plugin(self, organisation: str, plugin_id: str) -> Plugin | None:
        return self._get_model(
            f"/v1/organisations/{quote(organisation, safe='')}/plugins/{quote(plugin_id, safe='')}", Plugin)

    def _cached_plugins(self, key: PluginKey) -> list[Plugin]:
        # A copy of the list, so a caller that sorts or filters in place does not touch the cache.
        return list(self._plugins.get_or_load(key, lambda: self._fetch_plugins(*key)))

    def _fetch_plugins(
        self, organisation: str, plugin_type: str | None, consumes: str | None
    ) -> list[Plugin]:
        path = f"/v1/organisations/{quote(organisation, safe='')}/plugins"
        params = {name: value for name, value in (("plugin_type", plugin_type), ("consumes", consumes))
                  if value is not None}
        answer = self._get_json(path, params=params)
        if answer is None:
            return []
        try:
            return self._items(path, Plugin, answer)
        except TypeError as error:
            raise self._unexpected(path, error) from error
