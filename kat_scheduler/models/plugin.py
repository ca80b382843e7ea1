from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator


class Plugin(BaseModel):
    """A boefje, normalizer or bit as Katalogus describes it for one organisation."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["boefje", "normalizer", "bit"]
    enabled: bool = False
    name: str | None = None
    version: str | None = None
    scan_level: int = 1
    consumes: list[str] = []
    produces: list[str] = []
    cron: str | None = None
    interval: int | None = None
    run_on: list[Literal["create", "update"]] | None = None
    oci_image: str | None = None

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
