"""What the beat remembers about each organisation's boefjes between ticks and across restarts.

- `seen`: the enabled boefjes of an organisation the beat has already handled. A boefje enabled
  since then is new and gets tasks for the existing objects it consumes; a restart does not make
  every boefje new again.
- `jobs`: the passes over existing objects still to do for new boefjes, each with a cursor
  (the Octopoes offset reached), so that a pass over a million objects is done in bounded slices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from kat_scheduler.store import StoreClient

SEP = "\x1f"


class BoefjeCatalogueRepository:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # Replies are str (decode_responses=True); redis-py's annotations cannot say so.
        self.client: Any = StoreClient(client, "catalogue")
        self.base = "{" + f"{prefix}:catalogue" + "}"

    def _seen_key(self, organisation: str) -> str:
        return f"{self.base}:seen:{organisation}"

    def seen(self, organisation: str) -> set[str]:
        return set(self.client.smembers(self._seen_key(organisation)))

    def start_jobs(self, organisation: str, boefje_ids: Iterable[str]) -> None:
        """Mark boefjes as seen and queue their passes, in one transaction."""
        ids = list(boefje_ids)
        if not ids:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self._seen_key(organisation), *ids)
        pipe.hset(f"{self.base}:jobs", mapping={f"{organisation}{SEP}{i}": 0 for i in ids})
        pipe.execute()

    def forget(self, organisation: str, boefje_ids: Iterable[str]) -> None:
        """Boefjes that were disabled: they count as new when enabled again, and their passes stop."""
        ids = list(boefje_ids)
        if not ids:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.srem(self._seen_key(organisation), *ids)
        pipe.hdel(f"{self.base}:jobs", *(f"{organisation}{SEP}{i}" for i in ids))
        pipe.execute()

    def jobs(self) -> list[tuple[str, str, int]]:
        """(organisation, boefje id, offset reached) of every unfinished pass."""
        found = []
        for job, offset in self.client.hgetall(f"{self.base}:jobs").items():
            organisation, _, boefje_id = job.partition(SEP)
            found.append((organisation, boefje_id, int(offset)))
        return sorted(found)

    def advance(self, organisation: str, boefje_id: str, offset: int) -> None:
        # HSET XX semantics: a job that was forgotten meanwhile must not come back.
        self.client.eval(
            "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end",
            1, f"{self.base}:jobs", f"{organisation}{SEP}{boefje_id}", offset,
        )

    def finish(self, organisation: str, boefje_id: str) -> None:
        self.client.hdel(f"{self.base}:jobs", f"{organisation}{SEP}{boefje_id}")
