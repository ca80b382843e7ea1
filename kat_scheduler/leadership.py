"""One leader among several beats: a lease in Redis, held with a token.

The leader renews its lease well before it runs out: on each tick, between the steps of a pass, and
from a thread of its own every third of the lease (`keep_alive`), so a step that waits long on a slow
service does not let the lease lapse while the process is alive. A standby tries to take it on every
tick, so it takes over within one lease length plus one tick after the leader dies. A leader whose
renewal fails (the lease ran out, someone else holds it) steps down to standby instead of carrying on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import redis

from kat_scheduler.queues.lua_library import LuaLibrary
from kat_scheduler.store import StoreClient, StoreUnavailable

logger = logging.getLogger(__name__)

LEADERSHIP_LUA = Path(__file__).parent / "leadership.lua"


def beat_leader_key(prefix: str) -> str:
    """The beat's leader lease: the one key name of this store."""
    return "{" + f"{prefix}:beat" + "}:leader"


class Leadership:
    def __init__(self, client: redis.Redis, key: str, lease_seconds: float) -> None:
        self.client: Any = StoreClient(client, "leader lease")
        self.key = key
        self.lease_ms = int(lease_seconds * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # says who leads
        self.is_leader = False
        self._lua = LuaLibrary(self.client, LEADERSHIP_LUA)
        self._lock = threading.Lock()  # the beat's thread and the keep-alive thread both renew
        self._stopping = threading.Event()
        self._keeper: threading.Thread | None = None

    def keep_alive(self) -> None:
        """Renew the lease from a thread of its own while this process leads. Idempotent."""
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="beat-lease", daemon=True)
            self._keeper.start()

    def stop_keeping(self) -> None:
        """Stop the keep-alive thread (on shutdown; without a release, the lease then runs out)."""
        self._stopping.set()

    def _keep(self) -> None:
        while not self._stopping.wait(self.lease_ms / 3000):
            if self.is_leader:
                self.renew()

    def _call(self, operation: str) -> bool:
        return bool(self._lua([self.key], [operation, self.token, self.lease_ms]))

    def hold(self) -> bool:
        """Take or keep the lease; True while this process leads."""
        with self._lock:
            try:
                held = self._call("acquire")
            except StoreUnavailable as error:
                logger.warning("leader lease unknown, acting as standby: %s", error)
                held = False
            if held != self.is_leader:
                logger.info("beat %s %s", self.token, "is now the leader" if held else "steps down to standby")
            self.is_leader = held
            return held

    def renew(self) -> bool:
        """Extend the lease during a long pass; False (and standby) when it was lost."""
        with self._lock:
            if not self.is_leader:
                return False
            try:
                self.is_leader = self._call("renew")
            except StoreUnavailable as error:
                logger.warning("could not renew the leader lease: %s", error)
                self.is_leader = False
            if not self.is_leader:
                logger.warning("beat %s lost the leader lease; stepping down to standby", self.token)
            return self.is_leader

    def release(self) -> None:
        """Give the lease up (on shutdown), so a standby need not wait for it to run out. Idempotent."""
        self.stop_keeping()
        if self.is_leader:
            try:
                self._call("release")
            except StoreUnavailable as error:
                logger.warning("could not release the leader lease: %s", error)
            self.is_leader = False

    @classmethod
    def of_beat(cls, client: redis.Redis, prefix: str, lease_seconds: float = 0.0) -> Leadership:
        """The beats' lease; with no `lease_seconds`, for reading who leads (status, metrics)."""
        return cls(client, beat_leader_key(prefix), lease_seconds)

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return str(value) if value is not None else None

    def holder_and_ms_left(self) -> tuple[str | None, int]:
        """Who holds the lease and for how many more ms (0 when nobody leads), read in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.key)
        pipe.pttl(self.key)
        holder, ttl_ms = pipe.execute()
        return (str(holder) if holder is not None else None), max(0, int(ttl_ms))
