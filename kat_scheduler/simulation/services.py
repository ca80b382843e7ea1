"""Katalogus, Octopoes and Bytes served over real HTTP on 127.0.0.1, with faults you can turn up.

    with SimulatedKAT.start(World.generate(seed=1)) as kat:
        client = KatalogusClient(kat.katalogus_url)
        kat.katalogus.faults.error_rate = 0.5   # half the requests answer 500 from now on

Paths and shapes are those of contracts §1-§3. Each service has its own `faults` (latency, error
rate, timeout rate and how long a "timeout" hangs, plus `fail_next`/`hang_next` for deterministic
tests) and counts the requests it served. Octopoes and Bytes publish the events OpenKAT publishes
through an `EventPublisher` (the in-process bus unless you give a RabbitPublisher).
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kat_scheduler.connectors.listeners.bus import InProcessBus
from kat_scheduler.simulation import events
from kat_scheduler.simulation.publisher import EventPublisher
from kat_scheduler.simulation.world import JSON, World, ooi

logger = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Faults:
    """Settable at runtime, read per request."""

    latency: float = 0.0  # seconds added to every answer
    error_rate: float = 0.0  # fraction of requests answered 500
    timeout_rate: float = 0.0  # fraction of requests that hang `hang_seconds` before answering 504
    hang_seconds: float = 30.0
    fail_next: int = 0  # the next N requests answer 500, whatever the rates
    hang_next: int = 0  # the next N requests hang

    def reset(self) -> None:
        """Back to a healthy service."""
        for name, value in vars(Faults()).items():
            setattr(self, name, value)


Answer = tuple[int, Any]
Route = tuple[str, re.Pattern[str], Callable[..., Answer]]


class SimulatedService:
    """One HTTP service in a background thread; subclasses declare `routes()`."""

    name = "service"

    def __init__(self, world: World, host: str = "127.0.0.1", port: int = 0, seed: int = 0) -> None:
        self.world = world
        self.faults = Faults()
        self.requests_served = 0
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._closing = threading.Event()
        self._routes = [(method, re.compile(f"^{pattern}$"), handler)
                        for method, pattern, handler in self.routes()]
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a hanging request must not hold up stop()
        # A short poll interval keeps stop() quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"sim-{self.name}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()  # ends hanging requests too
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def routes(self) -> list[tuple[str, str, Callable[..., Answer]]]:
        raise NotImplementedError

    def handle(self, request: Request) -> Answer:
        """Count, apply the faults, then route."""
        with self._lock:
            self.requests_served += 1
            faults = self.faults
            hang = faults.hang_next > 0 or self._rng.random() < faults.timeout_rate
            fail = not hang and (faults.fail_next > 0 or self._rng.random() < faults.error_rate)
            if faults.hang_next > 0:
                faults.hang_next -= 1
            elif fail and faults.fail_next > 0:
                faults.fail_next -= 1
        if faults.latency:
            self._closing.wait(faults.latency)
        if hang:
            self._closing.wait(faults.hang_seconds)
            return 504, {"detail": "simulated timeout"}
        if fail:
            return 500, {"detail": "simulated failure"}
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                return handler(request, *(unquote(group) for group in match.groups()))
        return 404, {"detail": "Not Found"}


class KatalogusService(SimulatedService):
    name = "katalogus"

    def routes(self) -> list[tuple[str, str, Callable[..., Answer]]]:
        return [
            ("GET", "/health", self.health),
            ("GET", "/v1/organisations", self.organisations),
            ("GET", "/v1/organisations/([^/]+)", self.organisation),
            ("GET", "/v1/organisations/([^/]+)/plugins", self.plugins),
            ("GET", "/v1/organisations/([^/]+)/plugins/([^/]+)", self.plugin),
            ("GET", "/v1/configs", self.configs),
        ]

    def health(self, _request: Request) -> Answer:
        return 200, {"service": "katalogus", "healthy": True, "version": "sim", "additional": None}

    def organisations(self, _request: Request) -> Answer:
        return 200, dict(self.world.organisations)

    def organisation(self, _request: Request, org: str) -> Answer:
        found = self.world.organisations.get(org)
        return (200, found) if found else (404, {"detail": "Unknown organisation"})

    def plugins(self, request: Request, org: str) -> Answer:
        if org not in self.world.organisations:
            return 404, {"detail": "Unknown organisation"}
        plugin_type, consumes = request.arg("plugin_type"), request.arg("consumes")
        found = [plugin for plugin in self.world.plugins_of(org)
                 if (plugin_type is None or plugin["type"] == plugin_type)
                 and (consumes is None or consumes in plugin.get("consumes", []))]
        return 200, found

    def plugin(self, _request: Request, org: str, plugin_id: str) -> Answer:
        if org not in self.world.organisations:
            return 404, {"detail": "Unknown organisation"}
        found = [plugin for plugin in self.world.plugins_of(org) if plugin["id"] == plugin_id]
        return (200, found[0]) if found else (404, {"detail": "Plugin not found"})

    def configs(self, request: Request) -> Answer:
        """An organisation's config of a boefje and, with_duplicates, the equal ones of the organisations
        that deduplicate (every simulated config has the same, empty, settings)."""
        org, boefje_id = request.arg("organisation_id"), request.arg("boefje_id")
        if org not in self.world.organisations or not self.world.enabled.get(org, {}).get(boefje_id or ""):
            return 200, []
        config: JSON = {"organisation_id": org, "boefje_id": boefje_id, "enabled": True, "settings": {},
                        "duplicates": []}
        if request.arg("with_duplicates") == "true":
            config["duplicates"] = [
                {"organisation_id": other, "boefje_id": boefje_id, "enabled": True, "settings": {}}
                for other, details in sorted(self.world.organisations.items())
                if other != org and details.get("deduplicate")
                and self.world.enabled.get(other, {}).get(boefje_id or "")]
        return 200, [config]

    def set_enabled(self, org: str, plugin_id: str, enabled: bool) -> None:
        self.world.enabled.setdefault(org, {})[plugin_id] = enabled


class OctopoesService(SimulatedService):
    name = "octopoes"

    def __init__(self, world: World, publisher: EventPublisher,
                 queue_name: str = events.SCAN_PROFILE_MUTATIONS, **options: Any) -> None:
        super().__init__(world, **options)
        self.publisher = publisher
        self.queue_name = queue_name

    def routes(self) -> list[tuple[str, str, Callable[..., Answer]]]:
        return [
            ("GET", "/object-clients", self.object_clients),
            ("GET", "/([^/]+)/health", self.health),
            ("GET", "/([^/]+)/objects", self.objects),
            ("GET", "/([^/]+)/object", self.object),
        ]

    def health(self, _request: Request, org: str) -> Answer:
        if org not in self.world.oois:
            return 404, {"detail": "Unknown organisation"}
        return 200, {"service": "octopoes", "healthy": True, "version": "sim", "results": []}

    def objects(self, request: Request, org: str) -> Answer:
        types = set(request.query.get("types", []))
        levels = {int(level) for level in request.query.get("scan_level", [])}
        offset = int(request.arg("offset", "0") or 0)
        limit = int(request.arg("limit", "50") or 50)
        with self._lock:
            matching = [o for _, o in sorted(self.world.oois.get(org, {}).items())
                        if (not types or o["object_type"] in types)
                        and (not levels or (o["scan_profile"] and o["scan_profile"]["level"] in levels))]
        return 200, {"count": len(matching), "items": matching[offset:offset + limit]}

    def object_clients(self, request: Request) -> Answer:
        reference = request.arg("reference") or ""
        with self._lock:
            held = {org: self.world.oois[org][reference] for org in request.query.get("clients", [])
                    if reference in self.world.oois.get(org, {})}
        return 200, held

    def object(self, request: Request, org: str) -> Answer:
        with self._lock:
            found = self.world.oois.get(org, {}).get(request.arg("reference") or "")
        return (200, found) if found else (404, {"detail": "Object not found"})

    # Changes, each published as Octopoes publishes it.

    def add_object(self, org: str, primary_key: str, level: int | None = None) -> JSON:
        value = ooi(primary_key, level)
        with self._lock:
            self.world.oois.setdefault(org, {})[primary_key] = value
        self.publisher.publish(self.queue_name,
                               events.scan_profile_mutation(org, "create", primary_key, value))
        return value

    def set_scan_level(self, org: str, primary_key: str, level: int) -> JSON:
        with self._lock:
            value = self.world.oois[org][primary_key] = ooi(primary_key, level)
        self.publisher.publish(self.queue_name,
                               events.scan_profile_mutation(org, "update", primary_key, value))
        return value

    def delete_object(self, org: str, primary_key: str) -> None:
        with self._lock:
            self.world.oois.get(org, {}).pop(primary_key, None)
        self.publisher.publish(self.queue_name,
                               events.scan_profile_mutation(org, "delete", primary_key, None))

    def objects_of(self, org: str) -> list[JSON]:
        """A copy of one organisation's objects, safe to read while runners and changes add more."""
        with self._lock:
            return list(self.world.oois.get(org, {}).values())


class BytesService(SimulatedService):
    name = "bytes"

    def __init__(self, world: World, publisher: EventPublisher, username: str = "bytes",
                 password: str = "bytes", token_ttl: float = 3600.0,
                 queue_name: str = events.RAW_FILE_RECEIVED, **options: Any) -> None:
        super().__init__(world, **options)
        self.publisher = publisher
        self.queue_name = queue_name
        self.username = username
        self.password = password
        self.token_ttl = token_ttl
        self.logins = 0
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic)

    def routes(self) -> list[tuple[str, str, Callable[..., Answer]]]:
        return [
            ("GET", "/health", self.health),
            ("POST", "/token", self.token),
            ("GET", "/bytes/boefje_meta", self.authorized(self.list_boefje_meta)),
            ("POST", "/bytes/boefje_meta", self.authorized(self.post_boefje_meta)),
            ("POST", "/bytes/raw", self.authorized(self.post_raw)),
            ("GET", "/bytes/raw/([^/]+)/meta", self.authorized(self.raw_meta)),
        ]

    def expire_tokens(self) -> None:
        """Every token handed out so far is refused from now on, as after Bytes' key rotation."""
        with self._lock:
            self._tokens.clear()

    def health(self, _request: Request) -> Answer:
        return 200, {"service": "bytes", "healthy": True, "version": "sim", "additional": None}

    def token(self, request: Request) -> Answer:
        form = parse_qs(request.body.decode())
        if form.get("username") != [self.username] or form.get("password") != [self.password]:
            return 401, {"detail": "Incorrect username or password"}
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
            self.logins += 1
        expires_at = datetime.now(UTC) + timedelta(seconds=self.token_ttl)
        return 200, {"access_token": token, "token_type": "bearer", "expires_at": expires_at.isoformat()}

    def authorized(self, handler: Callable[..., Answer]) -> Callable[..., Answer]:
        def checked(request: Request, *path_parts: str) -> Answer:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            with self._lock:
                expiry = self._tokens.get(token)
            if scheme.lower() != "bearer" or expiry is None or expiry < time.monotonic():
                return 401, {"detail": "Could not validate credentials"}
            return handler(request, *path_parts)
        return checked

    def list_boefje_meta(self, request: Request) -> Answer:
        wanted = {field: request.arg(param) for field, param in
                  (("organization", "organization"), ("input_ooi", "input_ooi"))}
        boefje_id = request.arg("boefje_id")
        with self._lock:
            found = [meta for meta in self.world.boefje_metas.values()
                     if all(value is None or meta.get(field) == value for field, value in wanted.items())
                     and (boefje_id is None or meta["boefje"]["id"] == boefje_id)]
        found.sort(key=lambda meta: meta.get("started_at") or "",
                   reverse=request.arg("descending", "false") == "true")
        return 200, found[: int(request.arg("limit", "100") or 100)]

    def post_boefje_meta(self, request: Request) -> Answer:
        self.save_boefje_meta(json.loads(request.body))
        return 201, None

    def raw_meta(self, _request: Request, raw_id: str) -> Answer:
        with self._lock:
            raw = self.world.raw_files.get(raw_id)
            meta = self.world.boefje_metas.get(raw["boefje_meta_id"]) if raw else None
        if raw is None or meta is None:
            return 404, {"detail": "Raw file not found"}
        return 200, {"id": raw_id, "boefje_meta": meta, "mime_types": [{"value": v} for v in raw["mime_types"]]}

    def post_raw(self, request: Request) -> Answer:
        meta_id = request.arg("boefje_meta_id") or ""
        if meta_id not in self.world.boefje_metas:
            return 404, {"detail": "Unknown boefje meta"}
        return 200, {"id": self.save_raw(meta_id, request.body, request.query.get("mime_types", []))}

    # Direct calls, for tests and the demo (no faults, no authentication).

    def save_boefje_meta(self, meta: JSON) -> JSON:
        meta = {"arguments": {}, "started_at": None, "ended_at": None, "runnable_hash": None,
                "environment": {}, **meta}
        with self._lock:
            self.world.boefje_metas[meta["id"]] = meta
        return meta

    def record_run(self, org: str, boefje_id: str, input_ooi: str | None,
                   started_at: datetime, ended_at: datetime | None) -> JSON:
        """Store a finished (or, with `ended_at` None, a running) boefje run."""
        return self.save_boefje_meta({
            "id": events.new_id(), "boefje": {"id": boefje_id, "version": None}, "input_ooi": input_ooi,
            "organization": org, "started_at": started_at.isoformat(),
            "ended_at": ended_at.isoformat() if ended_at else None,
        })

    def save_raw(self, boefje_meta_id: str, content: bytes, mime_types: list[str] | None = None) -> str:
        """Store a raw file and publish `raw_file_received`; `boefje/<id>` is always a mime type."""
        with self._lock:
            meta = self.world.boefje_metas[boefje_meta_id]
        values = list(mime_types or [])
        boefje_type = f"boefje/{meta['boefje']['id']}"
        if boefje_type not in values:
            values.insert(0, boefje_type)
        raw_id = events.new_id()
        with self._lock:
            self.world.raw_files[raw_id] = {"id": raw_id, "boefje_meta_id": boefje_meta_id,
                                            "mime_types": values, "size": len(content)}
        self.publisher.publish(self.queue_name, events.raw_file_received(raw_id, meta, values))
        return raw_id


class SimulatedKAT:
    """The three services of one world, started together; stop() (or the `with` block) ends them."""

    def __init__(
        self,
        world: World,
        publisher: EventPublisher | None = None,
        bytes_username: str = "bytes",
        bytes_password: str = "bytes",
        seed: int = 0,
        mutation_queue: str = events.SCAN_PROFILE_MUTATIONS,
        raw_file_queue: str = events.RAW_FILE_RECEIVED,
    ) -> None:
        self.world = world
        self.publisher: EventPublisher = publisher if publisher is not None else InProcessBus()
        self.katalogus = KatalogusService(world, seed=seed)
        self.octopoes = OctopoesService(world, self.publisher, mutation_queue, seed=seed + 1)
        self.bytes = BytesService(world, self.publisher, bytes_username, bytes_password,
                                  queue_name=raw_file_queue, seed=seed + 2)

    @classmethod
    def start(cls, world: World, publisher: EventPublisher | None = None, **options: Any) -> SimulatedKAT:
        kat = cls(world, publisher, **options)
        for service in kat.services:
            service.start()
        return kat

    @property
    def services(self) -> tuple[SimulatedService, ...]:
        return (self.katalogus, self.octopoes, self.bytes)

    @property
    def katalogus_url(self) -> str:
        return self.katalogus.url

    @property
    def octopoes_url(self) -> str:
        return self.octopoes.url

    @property
    def bytes_url(self) -> str:
        return self.bytes.url

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def __enter__(self) -> SimulatedKAT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler_class(service: SimulatedService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients' pooled sessions are exercised
        # Headers and body in one send, without Nagle: else each keep-alive answer waits ~40 ms on the
        # client's delayed ACK.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, parts.path.rstrip("/") or "/",
                              parse_qs(parts.query, keep_blank_values=True),
                              {key.lower(): value for key, value in self.headers.items()},
                              self.rfile.read(length) if length else b"")
            try:
                status, body = service.handle(request)
            except Exception:
                logger.exception("simulated %s failed on %s %s", service.name, self.command, self.path)
                status, body = 500, {"detail": "internal error"}
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a simulated timeout): nothing to answer to

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s: " + format, service.name, *args)

    return Handler
