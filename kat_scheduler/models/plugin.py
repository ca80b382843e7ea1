from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from kat_scheduler.models.inputs import Name, PluginId, Text


class Plugin(BaseModel):
    """A boefje, normalizer or bit as Katalogus describes it for one organisation."""

    model_config = ConfigDict(extra="ignore")

    id: PluginId
    type: Literal["boefje", "normalizer", "bit"]
    enabled: bool = False
    name: Text | None = None
    version: Text | None = None
    scan_level: int = 1
    consumes: list[Name] = []
    produces: list[Name] = []
    cron: Name | None = None
    interval: int | None = None
    run_on: list[Literal["create", "update"]] | None = None
    oci_image: Name | None = None

    @field_validator("consumes", mode="before")
    @classmethod
    def _consumes_as_list(cls, value: object) -> object:
        # Katalogus sends a boefje's consumes as a list and a normalizer's as a string or a list.
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("scan_level", mode="before")
    @classmethod
    def _default_scan_level(cls, value: object) -> object:
        return 1 if value is None else value
