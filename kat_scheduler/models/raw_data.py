from pydantic import BaseModel, ConfigDict


class BoefjeRef(BaseModel):
    """A boefje as task payloads and boefje metadata name it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
    version: str | None = None
    oci_image: str | None = None


class BoefjeMeta(BaseModel):
    """One run of a boefje, as Bytes records it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    boefje: BoefjeRef
    input_ooi: str | None = None
    arguments: dict[str, object] = {}
    organization: str
    started_at: str | None = None
    ended_at: str | None = None


class MimeType(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: str


class RawData(BaseModel):
    """A raw file in Bytes: a boefje's output with the mime types it was stored under."""

    model_config = ConfigDict(extra="ignore")

    id: str
    boefje_meta: BoefjeMeta
    mime_types: list[MimeType] = []

    @property
    def mime_type_values(self) -> list[str]:
        return [mime_type.value for mime_type in self.mime_types]
