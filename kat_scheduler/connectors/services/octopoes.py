"""Octopoes: the object graph, read by organisation (contracts §2)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from kat_scheduler.config import Settings
from kat_scheduler.connectors.services.base import HTTPServiceClient
from kat_scheduler.models import OOI


class OctopoesClient(HTTPServiceClient):
    """Octopoes over HTTP; every path is scoped by organisation."""

    service_name = "Octopoes"

    @classmethod
    def from_settings(cls, settings: Settings) -> OctopoesClient:
        return cls(settings.octopoes_api, settings.octopoes_request_timeout)

    def health(self, organisation: str) -> bool:
        return self._healthy(f"/{quote(organisation, safe='')}/health")

    def iter_objects(
        self,
        organisation: str,
        types: Iterable[str],
        scan_levels: Iterable[int],
        page_size: int = 1000,
    ) -> Iterator[OOI]:
        """Every object of the given types and scan levels, fetched page by page as the caller reads."""
        types, scan_levels = list(types), list(scan_levels)
        offset = 0
        while True:
            count, items = self.objects_page(organisation, types, scan_levels, offset, page_size)
            yield from items
            offset += page_size
            if offset >= count or not items:
                return

    def objects_page(
        self, organisation: str, types: Iterable[str], scan_levels: Iterable[int], offset: int, limit: int
    ) -> tuple[int, list[OOI]]:
        """One page of objects and the total count, for passes that resume where they stopped."""
        path = f"/{quote(organisation, safe='')}/objects"
        filters: list[tuple[str, Any]] = [("types", t) for t in types]
        filters += [("scan_level", level) for level in scan_levels]
        answer = self._get_json(path, params=[*filters, ("offset", offset), ("limit", limit)])
        if answer is None:  # an organisation Octopoes does not know has no objects
            return 0, []
        try:
            return int(answer["count"]), self._items(path, OOI, answer["items"])
        except (KeyError, TypeError, ValueError) as error:
            raise self._unexpected(path, error) from error

    def get_object_clients(self, reference: str, organisations: Iterable[str]) -> dict[str, OOI]:
        """Which of `organisations` hold the object now, with their copy of it (`/object-clients`)."""
        path = "/object-clients"
        params: list[tuple[str, Any]] = [("reference", reference), *(("clients", o) for o in organisations)]
        answer = self._get_json(path, params=params)
        if not answer:
            return {}
        try:
            return {str(organisation): OOI.model_validate(ooi) for organisation, ooi in dict(answer).items()}
        except (TypeError, ValueError) as error:
            raise self._unexpected(path, error) from error

    def get_object(self, organisation: str, reference: str) -> OOI | None:
        return self._get_model(f"/{quote(organisation, safe='')}/object", OOI, params={"reference": reference})
