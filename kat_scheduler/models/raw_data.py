from pydantic import BaseModel, ConfigDict, Field

from kat_scheduler.models.inputs import MAX_MIME_TYPES, Document, Name, OrganisationId, PluginId, Text


class BoefjeRef(BaseModel):
    """A boefje as task payloads and boefje metadata name it."""

    model_config = ConfigDict(extra="ignore")

    id: PluginId
    name: Text | None = None
    version: Text | None = None
    oci_image: Name | None = None


class BoefjeMeta(BaseModel):
    """One run of a boefje, as Bytes records it."""

    model_config = ConfigDict(extra="ignore")

    id: Name
    boefje: BoefjeRef
    input_ooi: Name | None = None
    arguments: Document = {}
    organization: OrganisationId
    started_at: Name | None = None
    ended_at: Name | None = None


class MimeType(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: Name


class RawData(BaseModel):
    """A raw file in Bytes: a boefje's output with the mime types it was stored under."""

    model_config = ConfigDict(extra="ignore")

    id: Name
    boefje_meta: BoefjeMeta
    mime_types: list[MimeType] = Field([], max_length=MAX_MIME_TYPES)

    @property
    def mime_type_values(self) -> list[str]:
        return [mime_type.value for mime_type in self.mime_types]
