"""A short tour of the priority queue: push, claim, ack and reap, printed as it happens.

It runs against the Redis of SCHEDULER_REDIS_URL when that answers, else against an embedded
in-memory Redis (fakeredis), and keeps its keys under a prefix of its own.
"""

from __future__ import annotations

import time
import uuid

import redis

from kat_scheduler.config import load_settings
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.rankers import BoefjeRanker, RankingContext


def open_redis(url: str) -> tuple[redis.Redis, str]:
    client = connect(url, retries=0, timeout=1.0)
    try:
        client.ping()
        return client, f"the Redis at {url}"
    except redis.ConnectionError:
        import fakeredis

        return fakeredis.FakeRedis(decode_responses=True), "an embedded in-memory Redis (no Redis answered)"


def run_tour() -> int:
    settings = load_settings()
    client, where = open_redis(settings.redis_url)
    prefix = f"kat-demo-{uuid.uuid4().hex[:8]}"
    now = [int(time.time() * 1000)]
    queue = PriorityQueue(client, "boefje", prefix=prefix, lease_seconds=60, max_attempts=2,
                          clock_ms=lambda: now[0])
    ranker = BoefjeRanker()
    print(f"kat_scheduler queue tour on {where}")

    def push(org: str, ooi: str, boefje: str, **context: object) -> None:
        task = BoefjeTask(boefje={"id": boefje}, input_ooi=ooi, organization=org)
        score = ranker.rank(RankingContext(now_ms=now[0], **context))  # type: ignore[arg-type]
        result = queue.push(task, score)
        print(f"  push  {org:5} {boefje:14} {ooi:32} score {score:>15} -> {result.outcome}")

    try:
        print("1. pushing: org-a has a backlog of rescans, org-b one first scan, then a manual run")
        day_ms = 86_400_000
        for n in range(4):
            push("org-a", f"Hostname|internet|a{n}.example", "dns-records", last_run_ms=now[0] - 2 * day_ms)
        push("org-b", "IPAddressV4|internet|192.0.2.1", "nmap")
        push("org-a", "Hostname|internet|a0.example", "dns-records")  # same identity: refused
        push("org-a", "Hostname|internet|urgent.example", "ssl-certificates", manual=True)
        print(f"   queued: {queue.size()} per organisation: {queue.counts()}")

        print("2. claiming: manual first, then organisations take turns")
        claimed = queue.claim(3)
        for record in claimed:
            print(f"  claim {record.organisation:5} {record.data['boefje']['id']:14} {record.ooi:32} "
                  f"attempt {record.attempts}")
        print(f"  ack   {claimed[0].id[:8]} -> {queue.ack(claimed[0].id)}")
        print(f"  ack   {claimed[1].id[:8]} (failed) -> {queue.ack(claimed[1].id, failed=True)}")

        print("3. a runner vanished with the third claim: after its lease it comes back")
        now[0] += 61_000
        reaped = queue.reap()
        print(f"  reap  requeued {len(reaped.requeued)}, dead-lettered {len(reaped.dead_lettered)}; "
              f"queued again: {queue.size()}")
        print("4. the head of each organisation's queue:")
        for record in queue.peek():
            print(f"  next  {record.organisation:5} {record.data['boefje']['id']:14} score {record.score}")
    finally:
        keys = list(client.scan_iter(match="{" + prefix + ":*"))
        if keys:
            client.delete(*keys)
    print("done. `make test` runs the tests; docs/ explains the queue and its ranking.")
    return 0
