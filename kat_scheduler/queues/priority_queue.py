"""The Redis priority queue of one kind of task (boefje, normalizer, report: kinds/).

Every operation is one call of the Lua function beside this module (queue.lua), so any number of
processes can push, claim and ack at once: Redis runs each call alone. Lower scores are served
first (OpenKAT's convention); a negative score marks a manual task. Organisations take turns, see
docs/fairness.md.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import redis
from pydantic import ValidationError

from kat_scheduler import fast_json
from kat_scheduler.kinds import KINDS
from kat_scheduler.models.tasks import TaskPayload, TaskStatus
from kat_scheduler.queues.errors import InvalidItem
from kat_scheduler.queues.limits import LimitState, PluginLimit
from kat_scheduler.queues.lua_library import LuaLibrary
from kat_scheduler.repositories.task_records import SEP, TaskRecord, TaskRepository
from kat_scheduler.store import StoreClient

QUEUE_LUA = Path(__file__).parent / "queue.lua"
MEMBER_SEQ_LENGTH = 16  # hex digits before the task id in a sorted-set member
PUSH_CHUNK = 500  # items per script call in a batch push: keeps each call short for other clients
# Tasks asked for per script call in a claim, so that other clients get Redis in between. queue.lua takes
# a filtered claim with no limits, siblings or weights in play in bulk (a call of 1,000 held Redis 10-17 ms
# on the 2-core machine of docs/performance.md) and any other at most 100 a call (ONE_BY_ONE; its reply
# says when there may be more).
CLAIM_CHUNK = 1000

Payload = TaskPayload
Result = TypeVar("Result")
# An operation as the calls it makes: it yields each call's arguments (operation first), is sent the
# reply, and returns its result. PriorityQueue runs it with calls made at once (_run) or awaited from a
# coroutine (_run_batched: sent with the other calls of the event loop's turn), so both share one body.
Steps = Generator[list[Any], Any, Result]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


# The beat does not hear the runners' task events; the dispatchers do, and when Redis comes back after an
# outage they write the outcomes they heard meanwhile within a second or two (Lifecycle.replay). A beat
# that starts to lead, or whose Redis was away, waits this long before it reaps, so that a task that
# finished while Redis was away is not taken for lost and run again. (The API reaps only pulled tasks.)
REAP_HOLD_SECONDS = 5.0


class PushOutcome(StrEnum):
    QUEUED = "queued"
    UPDATED = "updated"  # the identity was queued already and got the new score
    DUPLICATE = "duplicate"  # the identity is queued, dispatched or running already
    FULL = "full"
    ID_TAKEN = "id_taken"


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: PushOutcome
    task_id: str  # the new task, or the task that already holds the identity
    holder_status: str | None = None
    record: TaskRecord | None = None  # for a single queued push: the record as stored

    @property
    def accepted(self) -> bool:
        return self.outcome in (PushOutcome.QUEUED, PushOutcome.UPDATED)


class Change(StrEnum):
    """What an operation on one task came to, besides the task's status (see Outcome)."""

    OK = "ok"  # done
    DROPPED = "dropped"  # a dead letter dropped
    UNKNOWN = "unknown"  # no such task
    STALE = "stale"  # the caller's claim is an earlier attempt
    NOT_DEAD = "not_dead"
    DUPLICATE = "duplicate"  # another task holds the same work


# An operation's answer: a Change, or the task's status. For cancel and requeue_dead the status is the
# result (CANCELLED, QUEUED); for the others a status says what kept the change from being made.
Outcome = Change | TaskStatus


def outcome_of(reply: str) -> Outcome:
    try:
        return Change(reply)
    except ValueError:
        return TaskStatus(reply)


@dataclass(frozen=True, slots=True)
class DeadLetterRequeue:
    outcome: Outcome  # TaskStatus.QUEUED, or why not
    holder: str | None = None  # with DUPLICATE: the task that holds the same work


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: TaskRecord
    died_ms: int


@dataclass(frozen=True, slots=True)
class ReapResult:
    requeued: list[str]
    dead_lettered: list[str]


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim call took, and whether it stopped at its bound with more perhaps left to take."""

    records: list[TaskRecord]
    more: bool


class PriorityQueue:
    """One kind's queue. `client` must decode responses (decode_responses=True)."""

    def __init__(
        self,
        client: redis.Redis,
        kind: str,
        *,
        prefix: str = "kat",
        maxsize: int = 0,
        lease_seconds: float = 300.0,
        max_attempts: int = 3,
        retention_seconds: int = 7 * 86400,
        filtered_claim_scan: int = 1000,
        dead_letter_retention_seconds: int = 0,
        keep_last_runs: bool = True,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        """`dead_letter_retention_seconds`: dead letters older than that are dropped by the reaps (0: kept
        until dropped by hand). `keep_last_runs`: record when each work identity last ended (P:lastrun),
        for rankers that ask."""
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(KINDS)}")
        # Replies are str (decode_responses=True); redis-py's annotations cannot say so.
        self.client: Any = StoreClient(client, f"queue {kind}")
        self.kind = kind
        self.payload_model = KINDS[kind].payload
        self.base = "{" + f"{prefix}:{kind}" + "}"
        self.maxsize = maxsize
        self.lease_ms = int(lease_seconds * 1000)
        self.max_attempts = max_attempts
        self.retention_ms = retention_seconds * 1000
        self.filtered_claim_scan = filtered_claim_scan
        self.dead_letter_retention_ms = dead_letter_retention_seconds * 1000
        self.keep_last_runs = keep_last_runs
        self.clock_ms = clock_ms
        self.records = TaskRepository(client, prefix, kind)
        self.limit_opens_at_ms: int | None = None  # from the last claim: when a rate limit holding tasks opens
        self._lua = LuaLibrary(self.client, QUEUE_LUA)
        self._sequence = itertools.count()

    def _call(self, operation: str, *args: Any) -> Any:
        return self._lua([self.base], [operation, self.clock_ms(), *args])

    async def _call_batched(self, operation: str, *args: Any) -> Any:
        return await self._lua.call_batched([self.base], [operation, self.clock_ms(), *args])

    def _run(self, steps: Steps[Result]) -> Result:
        """Drive an operation's steps (below) with calls made here and now."""
        try:
            call = next(steps)
            while True:
                call = steps.send(self._call(*call))
        except StopIteration as done:
            return done.value

    async def _run_batched(self, steps: Steps[Result]) -> Result:
        """Drive an operation's steps from a coroutine (LuaLibrary.call_batched)."""
        try:
            call = next(steps)
            while True:
                call = steps.send(await self._call_batched(*call))
        except StopIteration as done:
            return done.value

    def _call_many(self, operation: str, arg_lists: Iterable[list[Any]]) -> list[Any]:
        """Several calls of one operation, streamed on one connection (LuaLibrary.call_many)."""
        return self._lua.call_many([self.base], ([operation, self.clock_ms(), *args] for args in arg_lists))

    # -- pushing -----------------------------------------------------------------------------

    def validate(self, payload: Payload | dict[str, Any]) -> Payload:
        """The payload as this queue's model; InvalidItem names the field and the reason. The model's
        field types (models/inputs.py) keep key names and the record's separators safe."""
        if isinstance(payload, self.payload_model):
            return payload
        if isinstance(payload, TaskPayload):
            raise InvalidItem("data", f"a {type(payload).__name__} does not belong on the {self.kind} queue")
        try:
            validated = self.payload_model.model_validate(payload)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "data"
            raise InvalidItem(field, first["msg"]) from None
        return validated

    def push(
        self,
        payload: Payload | dict[str, Any],
        score: int,
        *,
        schedule_id: str | None = None,
        update: bool = False,
        manual_may_overflow: bool = True,
        data: Mapping[str, Any] | None = None,
    ) -> PushResult:
        """Queue one task. With update=True a queued task of the same identity takes the new score.

        `data`: the payload as the caller gave it, stored in place of the model's fields, so that a
        client gets back the fields it sent that the models do not know."""
        return self._run(self._push_steps(payload, score, schedule_id, update, manual_may_overflow, data))

    async def push_batched(self, payload: Payload | dict[str, Any], score: int, *,
                           data: Mapping[str, Any] | None = None) -> PushResult:
        """push, from a coroutine: the event loop serves others while Redis answers (LuaLibrary.call_batched)."""
        return await self._run_batched(self._push_steps(payload, score, None, False, True, data))

    def _push_steps(self, payload: Payload | dict[str, Any], score: int, schedule_id: str | None, update: bool,
                    manual_may_overflow: bool, data: Mapping[str, Any] | None) -> Steps[PushResult]:
        task = self.validate(payload)
        now = self.clock_ms()
        item = _push_item(task, int(score), schedule_id, now, next(self._sequence), data)
        reply = yield ["push", self._push_options(manual_may_overflow, update), item]
        if reply:
            return _push_result(task.id, reply[1])
        task_id, stored = item.split(SEP, 1)
        return PushResult(PushOutcome.QUEUED, task_id, record=TaskRecord.parse(self.kind, task_id, stored))

    def push_many(
        self,
        items: Iterable[tuple[Payload | dict[str, Any], int]],
        *,
        schedule_id: str | None = None,
        update: bool = False,
        manual_may_overflow: bool = True,
    ) -> list[PushResult]:
        """Queue many (payload, score) pairs in few round trips; all are validated before any is written."""
        validated = [(self.validate(payload), int(score)) for payload, score in items]
        chunks = [validated[start:start + PUSH_CHUNK] for start in range(0, len(validated), PUSH_CHUNK)]
        options = self._push_options(manual_may_overflow, update)

        def arguments(chunk: list[tuple[Payload, int]]) -> list[Any]:
            now = self.clock_ms()
            return [options, *(_push_item(payload, score, schedule_id, now, next(self._sequence))
                               for payload, score in chunk)]

        if len(chunks) == 1:
            replies = [self._call("push", *arguments(chunks[0]))]
        else:
            replies = self._call_many("push", (arguments(chunk) for chunk in chunks))
        results: list[PushResult] = []
        for chunk, exceptions in zip(chunks, replies, strict=True):
            outcomes = dict(zip(exceptions[::2], exceptions[1::2], strict=True))
            results += [_push_result(payload.id, outcomes.get(position, "queued"))
                        for position, (payload, _) in enumerate(chunk, start=1)]
        return results

    def _push_options(self, manual_may_overflow: bool, update: bool) -> str:
        """The push options as queue.lua reads them: "<maxsize>:<manual may overflow>:<update>"."""
        return f"{self.maxsize}:{int(manual_may_overflow)}:{int(update)}"

    # -- claiming and the claim's life ------------------------------------------------------

    def claim(self, count: int = 1, plugin_ids: Sequence[str] | None = None,
              lease_seconds: float | None = None) -> list[TaskRecord]:
        """Take the next `count` tasks in serving order, each under a lease (the queue's, or `lease_seconds`).

        With `plugin_ids`, only tasks of those plugins, wherever they stand in the queue (queue.lua's
        plugin index)."""
        return self._run(self._claim_steps(count, plugin_ids, lease_seconds))

    async def claim_batched(self, count: int = 1, plugin_ids: Sequence[str] | None = None,
                            lease_seconds: float | None = None) -> list[TaskRecord]:
        """claim, from a coroutine: the event loop serves others while Redis answers (LuaLibrary.call_batched)."""
        return await self._run_batched(self._claim_steps(count, plugin_ids, lease_seconds))

    def _claim_steps(self, count: int, plugin_ids: Sequence[str] | None,
                     lease_seconds: float | None) -> Steps[list[TaskRecord]]:
        claimed: list[TaskRecord] = []
        if plugin_ids is not None and not plugin_ids:
            return claimed
        lease_ms = self.lease_ms if lease_seconds is None else int(lease_seconds * 1000)
        while len(claimed) < count:  # CLAIM_CHUNK at a time: other clients get Redis in between
            wanted = min(CLAIM_CHUNK, count - len(claimed))
            taken = self._claimed((yield ["claim", wanted, lease_ms, *(plugin_ids or ())]))
            claimed += taken.records
            if not taken.more and sum(1 for record in taken.records if record.sibling_of is None) < wanted:
                break  # nothing more to take
        return claimed

    def dispatch(self, count: int, slots: int) -> list[TaskRecord]:
        """Claim for the dispatcher: at most `count` tasks and no more than `slots` minus the slots in use,
        each leased and held in a slot until it is acked, released or reaped (docs/dispatch.md)."""
        if count <= 0 or slots <= 0:
            return []
        return self._claimed(self._call("dispatch", count, self.lease_ms, slots)).records

    def _claimed(self, reply: list[str]) -> Claimed:
        """A claim's reply: its tail, "<more>:<opens>", then (id, record) pairs. When a rate limit held
        tasks back, the moment it opens again is kept in `limit_opens_at_ms` for the dispatcher's wait."""
        more, _, opens = reply[0].partition(":")
        self.limit_opens_at_ms = int(opens) if opens else None
        records: list[TaskRecord] = []
        leader: str | None = None
        for n in range(1, len(reply), 2):
            if reply[n].startswith("+"):  # claimed with the task before it (queue.lua's take_siblings)
                records.append(replace(TaskRecord.parse(self.kind, reply[n][1:], reply[n + 1]), sibling_of=leader))
            else:
                leader = reply[n]
                records.append(TaskRecord.parse(self.kind, leader, reply[n + 1]))
        return Claimed(records, more == "1")

    # -- siblings: one run for the same work in several organisations ---------------------------

    def group(self, key: str, task_ids: Sequence[str]) -> int:
        """Make the active tasks among `task_ids` siblings: a claim of one takes the queued others with it.
        Answers the group's size."""
        return int(self._call("group", key, *task_ids))

    # -- plugin limits (limits.py, queue.lua's gate) ----------------------------------------------

    def set_limit(self, plugin_id: str, limit: PluginLimit, *, configured: bool = False) -> str:
        """Limit a plugin from the next claim on: "set", "same", or "kept" (a configured limit does not
        replace one the API set or deleted)."""
        return str(self._call("set_limit", plugin_id, limit.encode(), "conf" if configured else "api"))

    def delete_limit(self, plugin_id: str, *, configured: bool = False) -> str:
        """"deleted", "none" or "kept" (as set_limit)."""
        return str(self._call("delete_limit", plugin_id, "conf" if configured else "api"))

    def limits(self) -> dict[str, PluginLimit]:
        stored = self.client.hgetall(self.base + ":limits")
        return {plugin: PluginLimit.decode(limit) for plugin, limit in stored.items()}

    def configured_limits(self) -> set[str]:
        """The plugins whose limit came from the configuration (and that the API has not changed)."""
        return set(self.client.smembers(self.base + ":limits_conf"))

    def set_weights(self, weights: Mapping[str, int]) -> str:
        """The organisations' weights (docs/fairness.md): each is served that many times in a row per turn;
        those not named weigh 1. "set" or "same"."""
        return str(self._call("set_weights", *(part for org, weight in sorted(weights.items())
                                                for part in (org, int(weight)))))

    def weights(self) -> dict[str, int]:
        return {org: int(weight) for org, weight in self.client.hgetall(self.base + ":weights").items()}

    def limit_states(self) -> list[LimitState]:
        return [LimitState(plugin, PluginLimit.decode(limit), int(busy), int(recent), int(queued))
                for plugin, limit, busy, recent, queued in self._call("limit_states")]

    def claim_one(self) -> TaskRecord | None:
        claimed = self.claim(1)
        return claimed[0] if claimed else None

    def ack(self, task_id: str, *, failed: bool = False, attempt: int | None = None) -> Outcome:
        """Finish a claimed task: OK, or why not (its status, UNKNOWN or STALE).

        Without `attempt`, a task that went back to the queue while its runner still worked on it is
        finished too: the runner's outcome is recorded rather than thrown away."""
        return outcome_of(self._call(*self._ack_call(task_id, failed, attempt)))

    async def ack_batched(self, task_id: str, *, failed: bool = False) -> Outcome:
        """ack, from a coroutine (LuaLibrary.call_batched)."""
        return outcome_of(await self._call_batched(*self._ack_call(task_id, failed, None)))

    def _ack_call(self, task_id: str, failed: bool, attempt: int | None) -> list[Any]:
        return ["ack", task_id, "failed" if failed else "completed", _token(attempt), self.retention_ms,
                "1" if self.keep_last_runs else "0"]

    def mark_running(self, task_id: str, attempt: int | None = None, lease_seconds: float | None = None,
                     started_ms: int | None = None, runner: str | None = None) -> Outcome:
        """A claimed task has started (or says it still runs); with `lease_seconds`, its lease starts anew;
        `started_ms`: when the runner says it started (a rate limit counts from there); `runner`: who runs
        it, for the task's history."""
        return outcome_of(self._call(*self._running_call(task_id, attempt, lease_seconds, started_ms, runner)))

    async def mark_running_batched(self, task_id: str, lease_seconds: float | None = None,
                                   runner: str | None = None) -> Outcome:
        """mark_running, from a coroutine (LuaLibrary.call_batched)."""
        return outcome_of(await self._call_batched(*self._running_call(task_id, None, lease_seconds, None, runner)))

    @staticmethod
    def _running_call(task_id: str, attempt: int | None, lease_seconds: float | None, started_ms: int | None,
                      runner: str | None) -> list[Any]:
        lease = "" if lease_seconds is None else str(int(lease_seconds * 1000))
        return ["running", task_id, _token(attempt), lease, "" if started_ms is None else started_ms,
                _history_note(runner)]

    def release(self, task_id: str, attempt: int | None = None) -> Outcome:
        """Give a claimed task back: it returns to its place in the queue."""
        return outcome_of(self._call("release", task_id, _token(attempt)))

    async def release_batched(self, task_id: str) -> Outcome:
        """release, from a coroutine (LuaLibrary.call_batched)."""
        return outcome_of(await self._call_batched("release", task_id, _token(None)))

    def renew(self, task_id: str, attempt: int | None = None, lease_seconds: float | None = None) -> Outcome:
        lease_ms = self.lease_ms if lease_seconds is None else int(lease_seconds * 1000)
        return outcome_of(self._call("renew", task_id, _token(attempt), lease_ms))

    def reap(self, limit: int = 1000, *, pulled_only: bool = False) -> ReapResult:
        """Return tasks whose lease ran out to the queue; dead-letter those out of attempts. `pulled_only`:
        leave the tasks forwarded to Celery runners (in a dispatcher slot) to the dispatchers and the beat."""
        requeued, dead = self._call("reap", self.max_attempts, limit, self.retention_ms,
                                    self.dead_letter_retention_ms, "1" if pulled_only else "0")
        return ReapResult(list(requeued), list(dead))

    # -- cancelling -------------------------------------------------------------------------

    def cancel(self, *task_ids: str) -> list[Outcome]:
        """Cancel queued tasks; per id TaskStatus.CANCELLED (also when it was cancelled before), UNKNOWN, or
        the status that kept it from being cancelled."""
        if not task_ids:
            return []
        return [outcome_of(reply) for reply in self._call("cancel", self.retention_ms, *task_ids)]

    def cancel_ooi(self, organisation: str, ooi: str) -> list[str]:
        """Cancel every queued task of one OOI; returns their ids."""
        return list(self._call("cancel_ooi", self.retention_ms, organisation, ooi))

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self, offset: int = 0, limit: int = 100) -> list[TaskRecord]:
        ids = self.client.zrange(f"{self.base}:dead", offset, offset + limit - 1)
        return self.records.get_many(ids)

    def dead_letters_since(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters first, each with when it died."""
        died = dict(self.client.zrange(f"{self.base}:dead", 0, limit - 1, withscores=True))
        return [DeadLetter(record, int(died[record.id])) for record in self.records.get_many(died)]

    def is_dead(self, task_id: str) -> bool:
        return self.client.zscore(f"{self.base}:dead", task_id) is not None

    def requeue_dead(self, task_id: str) -> DeadLetterRequeue:
        """A dead letter back to its queue with a fresh attempt count, unless another task holds its work."""
        reply, _, holder = str(self._call("requeue_dead", task_id)).partition(":")
        return DeadLetterRequeue(outcome_of(reply), holder or None)

    def drop_dead(self, task_id: str) -> Outcome:
        """DROPPED (its record stays for the retention period), or NOT_DEAD."""
        return outcome_of(self._call("drop_dead", self.retention_ms, task_id))

    # -- looking ----------------------------------------------------------------------------

    def size(self) -> int:
        """Queued tasks, all organisations together."""
        return sum(int(n) for n in self.client.hvals(f"{self.base}:counts"))

    def counts(self) -> dict[str, int]:
        """Queued tasks per organisation."""
        return {org: int(n) for org, n in self.client.hgetall(f"{self.base}:counts").items()}

    def in_flight(self) -> int:
        """Claimed tasks whose lease is still held."""
        return int(self.client.zcard(f"{self.base}:leases"))

    def slots_in_use(self) -> int:
        """Tasks the dispatcher forwarded that have not ended."""
        return int(self.client.scard(f"{self.base}:slots"))

    def slot_holders(self) -> set[str]:
        """The ids of the tasks in the dispatcher's slots."""
        return set(self.client.smembers(f"{self.base}:slots"))

    def in_slot(self, task_id: str) -> bool:
        return bool(self.client.sismember(f"{self.base}:slots", task_id))

    @property
    def wake_channel(self) -> str:
        """The pub/sub channel the script publishes on when work appears or a slot frees."""
        return f"{self.base}:wake"

    def stats(self) -> dict[str, int]:
        """Counters since the queue began: claimed, dispatched, completed, failed, requeued, dead_lettered."""
        return {event: int(n) for event, n in self.client.hgetall(f"{self.base}:stats").items()}

    def dead_count(self) -> int:
        return int(self.client.zcard(f"{self.base}:dead"))

    def list_queued(self, organisation: str, offset: int = 0, limit: int = 100) -> list[TaskRecord]:
        """One organisation's queued tasks in the order it will be served."""
        return self.records.get_many(self.queued_ids(organisation, offset, limit))

    def queued_ids(self, organisation: str, offset: int = 0, limit: int = 100) -> list[str]:
        """The ids of one organisation's queued tasks, in serving order."""
        members = self.client.zrange(f"{self.base}:q:{organisation}", offset, offset + limit - 1)
        return [member[MEMBER_SEQ_LENGTH:] for member in members]

    def queue_heads(self, organisations: list[str], limit: int) -> dict[str, list[TaskRecord]]:
        """The first `limit` queued tasks of each of `organisations`, in serving order: one round trip for
        the ids and one for the records, however many organisations."""
        pipe = self.client.pipeline(transaction=False)
        for organisation in organisations:
            pipe.zrange(f"{self.base}:q:{organisation}", 0, limit - 1)
        ids = {organisation: [member[MEMBER_SEQ_LENGTH:] for member in members]
               for organisation, members in zip(organisations, pipe.execute(), strict=True)}
        records = {record.id: record for record in self.records.get_many(i for each in ids.values() for i in each)}
        return {organisation: [records[i] for i in each if i in records] for organisation, each in ids.items()}

    def serving_order(self, offset: int = 0, limit: int = 100) -> list[str]:
        """The organisations with queued work, in the order of their turns."""
        return list(self.client.zrange(f"{self.base}:orgs", offset, offset + limit - 1))

    def oldest_pushed_ms(self) -> int | None:
        """When the longest-waiting queued task was first pushed, or None when nothing is queued: the first
        member of each organisation's P:w:<org> (queue.lua keeps them in push order). No record is read."""
        pushed = self.oldest_pushed_ms_by_organisation().values()
        return min(pushed) if pushed else None

    def oldest_pushed_ms_by_organisation(self) -> dict[str, int]:
        """Per organisation with queued work, when its longest-waiting task was first pushed."""
        organisations = list(self.counts())
        pipe = self.client.pipeline(transaction=False)
        for organisation in organisations:
            pipe.zrange(f"{self.base}:w:{organisation}", 0, 0)
        return {organisation: pushed_at_ms(members[0])
                for organisation, members in zip(organisations, pipe.execute(), strict=True) if members}

    def claimed_statuses(self, limit: int = 1000) -> list[tuple[str, TaskStatus]]:
        """(organisation, status) of the claimed tasks (dispatched or running), the soonest lease end first,
        at most `limit` of them."""
        return self.records.statuses(self.client.zrange(f"{self.base}:leases", 0, limit - 1))

    def peek(self, count: int = 10) -> list[TaskRecord]:
        """The head task of each organisation, in turn order: the next claims if nothing changes."""
        return [record for heads in self.queue_heads(self.serving_order(0, count), 1).values() for record in heads]


def _push_item(payload: Payload, score: int, schedule_id: str | None, now_ms: int, count: int,
               given: Mapping[str, Any] | None = None) -> str:
    """One push item for queue.lua: the task id and its record (RECORD_FIELDS), joined by SEP.

    The record's seq is 16 hex digits of (clock << 20 | counter); the script makes the sorted-set
    member "<seq><id>" of it, so equal scores come out in push order. The payload is stored without
    its id (the record's own key): the fields as given when there are, else the model's fields without
    the empty optional ones. (JSON escapes control characters, so the payload never holds SEP.)"""
    seq = f"{(now_ms << 20) | (count & 0xFFFFF):016x}"
    if given is None:
        data = payload.model_dump_json(exclude={"id"}, exclude_none=True)
    else:
        data = fast_json.dumps({key: value for key, value in given.items() if key != "id"}).decode()
    return SEP.join((payload.id, "queued", str(score), seq, "0", str(now_ms), str(now_ms), payload.organization,
                     payload.hash, payload.input_ooi or "", payload.plugin_id, schedule_id or "", "", "0", "", data))


def pushed_at_ms(member: str) -> int:
    """When a queued task was first pushed, from its sorted-set member: 16 hex digits of
    (pushing client's clock in ms << 20 | counter), then the task id."""
    return int(member[:MEMBER_SEQ_LENGTH], 16) >> 20


def _history_note(text: str | None) -> str:
    """A note for a record's history: without the characters that separate its entries and fields."""
    return "" if not text else text.translate(_NOT_IN_NOTES)[:80]


_NOT_IN_NOTES = str.maketrans({SEP: " ", ";": " ", ",": " "})


def _token(attempt: int | None) -> str:
    return "" if attempt is None else str(attempt)


def _push_result(task_id: str, reply: str) -> PushResult:
    outcome, _, rest = reply.partition(":")
    if outcome in ("queued", "full", "id_taken"):
        return PushResult(PushOutcome(outcome), task_id)
    holder, _, status = rest.partition(":")
    return PushResult(PushOutcome(outcome), holder, status or "queued")
