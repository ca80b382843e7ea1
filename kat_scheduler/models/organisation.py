from pydantic import BaseModel, ConfigDict

from kat_scheduler.models.inputs import OrganisationId, Text


class Organisation(BaseModel):
    """An organisation as Katalogus lists it."""

    model_config = ConfigDict(extra="ignore")

    id: OrganisationId
    name: Text | None = None
    deduplicate: bool = False  # Katalogus: its boefjes may run once for the organisations that share the work
