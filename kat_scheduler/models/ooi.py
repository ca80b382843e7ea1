from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kat_scheduler.models.inputs import Name


class ScanProfile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    level: int = Field(ge=0, le=4)
    reference: Name | None = None
    scan_profile_type: Literal["declared", "inherited", "empty"] | None = None


class OOI(BaseModel):
    """An object of interest in Octopoes."""

    model_config = ConfigDict(extra="ignore")

    primary_key: Name
    object_type: Name
    scan_profile: ScanProfile | None = None

    @property
    def scan_level(self) -> int | None:
        return self.scan_profile.level if self.scan_profile else None
