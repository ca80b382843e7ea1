from pydantic import BaseModel, ConfigDict


class Organisation(BaseModel):
    """An organisation as Katalogus lists it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
