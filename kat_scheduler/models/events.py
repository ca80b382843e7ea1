"""The RabbitMQ events kat_scheduler reacts to."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from kat_scheduler.models.inputs import Name, OrganisationId
from kat_scheduler.models.ooi import OOI
from kat_scheduler.models.raw_data import RawData


class ScanProfileMutation(BaseModel):
    """Octopoes' message on `scan_profile_mutations`; `value` is null on a delete."""

    model_config = ConfigDict(extra="ignore")

    operation: Literal["create", "update", "delete"]
    primary_key: Name
    value: OOI | None = None
    client_id: OrganisationId


class RawFileReceived(BaseModel):
    """Bytes' message on `raw_file_received`."""

    model_config = ConfigDict(extra="ignore")

    event_id: Name | None = None
    created_at: datetime | None = None
    organization: OrganisationId
    raw_data: RawData

    @model_validator(mode="after")
    def _one_organisation(self) -> RawFileReceived:
        """The file's boefje run decides whose normalizers parse it: an event naming another organisation
        is refused rather than guessed at, so that nobody can have their file parsed as someone else's."""
        if self.raw_data.boefje_meta.organization != self.organization:
            raise ValueError(f"organization {self.organization!r} is not the raw file's organisation "
                             f"{self.raw_data.boefje_meta.organization!r}")
        return self
