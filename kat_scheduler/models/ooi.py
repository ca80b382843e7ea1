from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ScanProfile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    level: int = Field(ge=0, le=4)
    reference: str | None = None
    scan_profile_type: Literal["declared", "inherited", "empty"] | None = None


class OOI(BaseModel):
    """An object of interest in Octopoes."""

    model_config = ConfigDict(extra="ignore")

    primary_key: str
    object_type: str
    scan_profile: ScanProfile | None = None

    @property
    def scan_level(self) -> int | None:
        return self.scan_profile.level if self.scan_profile else None
