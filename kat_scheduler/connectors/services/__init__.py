"""HTTP clients of OpenKAT's services: Katalogus, Octopoes and Bytes."""

from kat_scheduler.connectors.services.base import HTTPServiceClient, ServiceError, ServiceUnavailable
from kat_scheduler.connectors.services.bytes import BytesClient
from kat_scheduler.connectors.services.katalogus import KatalogusClient
from kat_scheduler.connectors.services.octopoes import OctopoesClient

__all__ = [
    "BytesClient",
    "HTTPServiceClient",
    "KatalogusClient",
    "OctopoesClient",
    "ServiceError",
    "ServiceUnavailable",
]
