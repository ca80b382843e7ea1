"""A generated, seeded KAT world: organisations, their objects, and a plugin catalogue.

The same seed and sizes give the same world, so a test or benchmark can name what it expects.
Everything is kept as the JSON the real services answer (with a few extra fields the real ones
carry, so clients are exercised on "ignore what you do not need").
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

OOI_TYPES = ("Hostname", "IPAddressV4", "IPAddressV6", "URL", "Website", "DNSZone", "IPPort")

# id, consumes, scan_level, interval (minutes), run_on, enabled by default
BOEFJES: tuple[tuple[str, tuple[str, ...], int, int | None, tuple[str, ...] | None, bool], ...] = (
    ("dns-records", ("Hostname",), 1, None, None, True),
    ("dns-sec", ("Hostname",), 1, None, ("create",), True),
    ("fierce", ("Hostname",), 3, 1440, None, False),
    ("dns-zone", ("DNSZone",), 1, None, None, True),
    ("nmap", ("IPAddressV4", "IPAddressV6"), 2, None, None, True),
    ("nmap-udp", ("IPAddressV4", "IPAddressV6"), 2, 2880, None, False),
    ("shodan", ("IPAddressV4", "IPAddressV6"), 1, 10080, None, True),
    ("rdns", ("IPAddressV4", "IPAddressV6"), 1, None, ("create", "update"), True),
    ("leakix", ("IPAddressV4", "IPAddressV6", "Hostname"), 1, 1440, None, True),
    ("ssl-certificates", ("Website",), 1, None, None, True),
    ("ssl-version", ("Website",), 2, None, None, True),
    ("security_txt_downloader", ("Website",), 2, 1440, None, True),
    ("webpage-analysis", ("URL",), 2, 60, None, True),
    ("service-banner", ("IPPort",), 2, None, None, False),
)

GENERIC_NORMALIZERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kat_generic_finding_normalize", ("openkat/finding",)),
    ("kat_http_headers_normalize", ("openkat-http/headers",)),
    ("kat_answer_parser", ("answer/json",)),
)


@dataclass
class World:
    """What Katalogus, Octopoes and Bytes know. Mutate it only through the simulated services."""

    seed: int
    organisations: dict[str, JSON]
    oois: dict[str, dict[str, JSON]]  # organisation -> primary key -> OOI
    plugins: dict[str, JSON]  # plugin id -> plugin (without `enabled`)
    enabled: dict[str, dict[str, bool]]  # organisation -> plugin id -> enabled
    boefje_metas: dict[str, JSON] = field(default_factory=dict)  # boefje meta id -> BoefjeMeta
    raw_files: dict[str, JSON] = field(default_factory=dict)  # raw id -> {"boefje_meta_id", ...}

    @classmethod
    def generate(cls, seed: int = 0, organisations: int = 3, oois_per_organisation: int = 100) -> World:
        rng = random.Random(seed)
        plugins = _catalogue()
        orgs: dict[str, JSON] = {}
        oois: dict[str, dict[str, JSON]] = {}
        enabled: dict[str, dict[str, bool]] = {}
        for number in range(1, organisations + 1):
            org_id = f"org{number}"
            orgs[org_id] = {"id": org_id, "name": f"Organisation {number}", "tags": []}
            oois[org_id] = _objects(rng, number, oois_per_organisation)
            enabled[org_id] = {plugin_id: _enabled_for(rng, plugin) for plugin_id, plugin in plugins.items()}
        return cls(seed, orgs, oois, plugins, enabled)

    def plugins_of(self, organisation: str) -> list[JSON]:
        """The catalogue as Katalogus shows it to one organisation: every plugin, with `enabled`."""
        states = self.enabled.get(organisation, {})
        return [{**plugin, "enabled": states.get(plugin_id, False)}
                for plugin_id, plugin in self.plugins.items()]

    def boefjes_for(self, ooi_type: str) -> list[JSON]:
        return [p for p in self.plugins.values() if p["type"] == "boefje" and ooi_type in p["consumes"]]

    def iter_oois(self, organisation: str) -> Iterator[JSON]:
        yield from self.oois.get(organisation, {}).values()


def ooi(primary_key: str, level: int | None, profile_type: str = "declared") -> JSON:
    """An OOI as Octopoes answers it; the type is the primary key's first part."""
    object_type = primary_key.split("|", 1)[0]
    profile = None if level is None else {"level": level, "reference": primary_key,
                                          "scan_profile_type": profile_type, "user_id": None}
    return {"primary_key": primary_key, "object_type": object_type, "scan_profile": profile,
            "user_id": None}


def _catalogue() -> dict[str, JSON]:
    plugins: dict[str, JSON] = {}
    for boefje_id, consumes, level, interval, run_on, default_on in BOEFJES:
        plugins[boefje_id] = {
            "id": boefje_id, "type": "boefje", "name": boefje_id.replace("-", " ").title(),
            "version": None, "scan_level": level, "consumes": list(consumes),
            "produces": [f"boefje/{boefje_id}"], "cron": None, "interval": interval,
            "run_on": list(run_on) if run_on else None,
            "oci_image": f"ghcr.io/minvws/openkat/{boefje_id}:latest" if boefje_id == "nmap" else None,
            "description": f"The {boefje_id} boefje", "authors": None, "related": [],
            "enabled_by_default": default_on, "schema": None, "boefje_schema": {},
        }
        normalizer_id = f"kat_{boefje_id.replace('-', '_')}_normalize"
        plugins[normalizer_id] = {
            "id": normalizer_id, "type": "normalizer", "name": None, "version": None,
            # Normalizers bind to a boefje through its raw files' mime types: `boefje/<id>` and the id.
            "consumes": [f"boefje/{boefje_id}", boefje_id], "produces": [], "description": "",
        }
    for normalizer_id, consumes in GENERIC_NORMALIZERS:
        plugins[normalizer_id] = {"id": normalizer_id, "type": "normalizer", "consumes": list(consumes),
                                  "produces": ["Finding"], "related": []}
    return plugins


def _enabled_for(rng: random.Random, plugin: JSON) -> bool:
    if plugin["type"] == "normalizer":
        return True
    by_default = bool(plugin["enabled_by_default"])
    # Organisations differ: about one in five flips a boefje away from its default.
    return by_default if rng.random() >= 0.2 else not by_default


DOCUMENTATION_NETWORKS = ("192.0.2.", "198.51.100.", "203.0.113.")


def _ipv4(serial: int) -> ipaddress.IPv4Address:
    """Documentation addresses (RFC 5737) while they last, then private ones."""
    network, host = divmod(serial, 254)
    if network < len(DOCUMENTATION_NETWORKS):
        return ipaddress.IPv4Address(f"{DOCUMENTATION_NETWORKS[network]}{host + 1}")
    return ipaddress.IPv4Address(0x0A000000 + serial)


def _objects(rng: random.Random, org_number: int, count: int) -> dict[str, JSON]:
    oois: dict[str, JSON] = {}
    domain = f"org{org_number}.example"
    serial = 0

    def add(primary_key: str) -> None:
        if len(oois) >= count or primary_key in oois:
            return
        roll = rng.random()
        level = None if roll < 0.1 else rng.choice((0, 1, 1, 2, 2, 3, 4))
        oois[primary_key] = ooi(primary_key, level, "declared" if roll < 0.6 else "inherited")

    add(f"DNSZone|internet|{domain}")
    while len(oois) < count:
        serial += 1
        host = f"host{serial}.{domain}"
        ipv4 = _ipv4(serial - 1)
        ipv6 = ipaddress.IPv6Address(f"2001:db8:{org_number:x}::{serial:x}")
        add(f"Hostname|internet|{host}")
        add(f"IPAddressV4|internet|{ipv4}")
        if rng.random() < 0.4:
            add(f"IPAddressV6|internet|{ipv6}")
        if rng.random() < 0.5:
            add(f"IPPort|internet|{ipv4}|tcp|443")
            add(f"Website|internet|{ipv4}|tcp|443|https|internet|{host}")
            add(f"URL|internet|https://{host}/")
        if rng.random() < 0.1:
            add(f"DNSZone|internet|zone{serial}.{domain}")
    return oois
