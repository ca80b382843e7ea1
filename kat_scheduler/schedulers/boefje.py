"""Boefje scheduling: which boefjes may run on which objects, and when they come round again.

Work appears three ways: a scan profile mutation (an object was created, changed level or was
deleted), a boefje that became enabled (it must visit the objects that already exist), and a
schedule that fell due (a rescan). Each candidate passes the same checks (kat-contracts.md §5)
before it is ranked and queued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from kat_scheduler.connectors.listeners.openkat import SCAN_PROFILE_MUTATIONS, ScanProfileMutationListener
from kat_scheduler.connectors.services import ServiceError
from kat_scheduler.context import AppContext
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.models import (
    OOI,
    BoefjeMeta,
    BoefjeRef,
    BoefjeTask,
    Plugin,
    ScanProfileMutation,
    Schedule,
    TaskStatus,
)
from kat_scheduler.models.tasks import new_task_id
from kat_scheduler.queues import PushOutcome, PushResult
from kat_scheduler.rankers import RankingContext
from kat_scheduler.repositories.boefje_catalogue import BoefjeCatalogueRepository
from kat_scheduler.repositories.schedules import from_ms
from kat_scheduler.schedulers.base import TRANSIENT_ERRORS, BeatStep, Scheduler, Subscription, patiently, register
from kat_scheduler.schedulers.deadlines import freshness_seconds, next_cron, next_deadline, valid_cron

logger = logging.getLogger(__name__)

# Objects per Octopoes page in a new boefje's pass over the existing objects.
NEW_BOEFJE_PAGE = 1000


def ooi_type_of(primary_key: str) -> str:
    """OpenKAT primary keys start with the object type: "Hostname|internet|example.com"."""
    return primary_key.split("|", 1)[0]


def permits(plugin: Plugin, ooi: OOI) -> bool:
    """The static checks: an enabled boefje that consumes the type, and a scan level that allows it."""
    level = ooi.scan_level
    return (plugin.type == "boefje" and plugin.enabled and ooi.object_type in plugin.consumes
            and level is not None and plugin.scan_level <= level)


def boefje_task(plugin: Plugin, organisation: str, primary_key: str) -> BoefjeTask:
    ref = BoefjeRef(id=plugin.id, name=plugin.name, version=plugin.version, oci_image=plugin.oci_image)
    return BoefjeTask(boefje=ref, input_ooi=primary_key, organization=organisation)


@dataclass(frozen=True, slots=True)
class Candidate:
    plugin: Plugin
    task: BoefjeTask
    score: int


@register
class BoefjeScheduler(Scheduler):
    kind = "boefje"
    runs_schedules = True

    def __init__(self, context: AppContext) -> None:
        super().__init__(context)
        self._next_refresh = 0.0
        self._deduplicating: dict[str, tuple[bool, float]] = {}  # organisation -> (its flag, until)
        self.schedules = self.context.schedules[self.kind]
        self.records = self.queue.records
        self.catalogue = BoefjeCatalogueRepository(self.context.redis, self.settings.key_prefix)
        # Lookups in Bytes and Octopoes, several at a time: a batch waits for the slowest, not for the sum.
        self._lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lookups")

    # -- what drives it ------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(SCAN_PROFILE_MUTATIONS, ScanProfileMutationListener, self._patient_mutation,
                             self._patient_mutations)]

    def beat_steps(self) -> list[BeatStep]:
        return [("refresh organisations", lambda beat: self.refresh_organisations(beat.keep_going)),
                ("queue new boefjes for existing objects",
                 lambda beat: self.work_on_new_boefjes_for(beat.tick_seconds / 2, beat.keep_going)),
                *super().beat_steps()]

    def _patient_mutation(self, event: ScanProfileMutation) -> None:
        patiently(lambda: self.on_mutation(event),
                  f"organisation {event.client_id}: {event.operation} of {event.primary_key}")

    def _patient_mutations(self, events: list[ScanProfileMutation]) -> None:
        patiently(lambda: self.on_mutations(events), f"a batch of {len(events)} scan profile mutations")

    # -- scan profile mutations ------------------------------------------------------------------

    def on_mutation(self, event: ScanProfileMutation) -> list[PushResult]:
        """Handle one `scan_profile_mutations` message; returns what was pushed."""
        return self.on_mutations([event])

    def on_mutations(self, events: list[ScanProfileMutation]) -> list[PushResult]:
        """Handle a batch of messages in order. Consecutive creates and updates of different objects
        are handled together, in a few round trips for the whole run; a delete, or a second change
        of the same object, starts a new run so that the later message has the last word."""
        results: list[PushResult] = []
        run: list[tuple[str, str, OOI]] = []  # (organisation, operation, object)
        in_run: set[tuple[str, str]] = set()
        for event in events:
            ooi = event.value
            key = (event.client_id, event.primary_key)
            if event.operation == "delete" or ooi is None or key in in_run:
                results += self._changed(run)
                run, in_run = [], set()
            if event.operation == "delete":
                self.forget_ooi(event.client_id, event.primary_key)
            elif ooi is None:
                logger.warning("organisation %s: %s of %s carries no object; ignored", event.client_id,
                               event.operation, event.primary_key)
            else:
                run.append((event.client_id, event.operation, ooi))
                in_run.add(key)
        return results + self._changed(run)

    def _changed(self, changes: list[tuple[str, str, OOI]]) -> list[PushResult]:
        """Objects created or changed: cancel what their level no longer permits, queue what it does.
        The objects' active tasks are read once, for both."""
        results: list[PushResult] = []
        for organisation in dict.fromkeys(org for org, _, _ in changes):
            mine = [(operation, ooi) for org, operation, ooi in changes if org == organisation]
            plugins = {ooi.object_type: self.context.katalogus.get_boefjes_by_ooi_type(organisation, ooi.object_type)
                       for _, ooi in mine}
            active = self.records.active_by_ooi(organisation, [ooi.primary_key for _, ooi in mine])
            changed = [(ooi, plugins[ooi.object_type]) for _, ooi in mine]
            cancelled = set(self.cancel_not_permitted(organisation, changed, active))
            known = {(organisation, primary_key): {identity: task_id for identity, task_id in tasks.items()
                                                   if task_id not in cancelled}
                     for primary_key, tasks in active.items()}
            pairs = [(p, ooi.primary_key) for operation, ooi in mine for p in plugins[ooi.object_type]
                     if permits(p, ooi) and (p.run_on is None or operation in p.run_on)]
            results += self.push_eligible(organisation, pairs, known_active=known)
        return results

    def forget_ooi(self, organisation: str, primary_key: str) -> None:
        """An object was deleted: its queued tasks are cancelled, and its schedules and last runs removed.
        Its work identities are those of its schedules and of the boefjes that consume its type."""
        cancelled = self.queue.cancel_ooi(organisation, primary_key)
        schedules = self.schedules.of_ooi(organisation, primary_key)
        self.schedules.delete_many(schedules)
        identities = {schedule.hash for schedule in schedules}
        try:
            plugins = self.context.katalogus.get_boefjes_by_ooi_type(organisation, ooi_type_of(primary_key))
        except ServiceError as error:  # the schedules name every identity that recurs; the rest can wait
            logger.warning("organisation %s: %s deleted; its boefjes could not be listed (%s), so only the "
                           "last runs of its schedules are removed", organisation, primary_key, error)
            plugins = []
        identities |= {boefje_task(plugin, organisation, primary_key).hash for plugin in plugins}
        forgotten = self.records.forget_last_runs(identities)
        logger.info("organisation %s: %s deleted; cancelled %d queued tasks, removed %d schedules and %d last runs",
                    organisation, primary_key, len(cancelled), len(schedules), forgotten)

    def cancel_not_permitted(self, organisation: str, changed: list[tuple[OOI, list[Plugin]]],
                             active: Mapping[str, Mapping[str, str]]) -> list[str]:
        """Cancel the queued tasks of changed objects whose boefje the (possibly lowered) scan level, or
        the boefje's own state, no longer allows. `active`: the objects' active tasks by primary key
        (TaskRepository.active_by_ooi)."""
        records = {r.id: r for r in self.records.get_many(i for tasks in active.values() for i in tasks.values())}
        doomed = []
        for ooi, plugins in changed:
            by_id = {p.id: p for p in plugins}
            for task_id in active[ooi.primary_key].values():
                record = records.get(task_id)
                if record is None or record.status is not TaskStatus.QUEUED:
                    continue
                plugin = by_id.get(record.plugin_id)
                if plugin is None or not permits(plugin, ooi):
                    doomed.append((record, ooi))
        outcomes = self.queue.cancel(*(record.id for record, _ in doomed))
        cancelled = []
        for (record, ooi), outcome in zip(doomed, outcomes, strict=True):
            if outcome is TaskStatus.CANCELLED:
                cancelled.append(record.id)
                logger.info("task %s organisation %s: cancelled, %s on %s is no longer permitted (level %s)",
                            record.id, organisation, record.plugin_id, ooi.primary_key, ooi.scan_level,
                            extra=task_fields(record.id, self.kind, organisation))
        return cancelled

    # -- from candidates to queued tasks ---------------------------------------------------------

    def push_eligible(self, organisation: str, pairs: Iterable[tuple[Plugin, str]], *,
                      schedule_next: bool = True,
                      known_active: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
                      ) -> list[PushResult]:
        """Rank and queue the (boefje, object) pairs whose work may run now: no task of the same work
        active, and its last run older than the grace period. Gives queued work a schedule.
        `known_active`: objects' active tasks read already, as for TaskRepository.activity."""
        now = self.now_ms()
        work = [(plugin, boefje_task(plugin, organisation, primary_key)) for plugin, primary_key in pairs]
        candidates = []
        states = self.run_states([t for _, t in work], known_active)
        for (plugin, task), (active, last_run) in zip(work, states, strict=True):
            fresh_for = freshness_seconds(plugin, self.settings.grace_period)
            if active or (last_run is not None and now - last_run < fresh_for * 1000):
                continue
            context = RankingContext(now_ms=now, last_run_ms=last_run, interval_seconds=fresh_for)
            candidates.append(Candidate(plugin, task, self.ranker.rank(context)))
        if not candidates:
            return []
        siblings = self.siblings_for(organisation, candidates)
        candidates = [replace(c, task=c.task.model_copy(update={"deduplication_key": c.task.id}))
                      if c.task.id in siblings else c for c in candidates]
        others = [sibling for c in candidates for sibling in siblings.get(c.task.id, [])]
        results = self.queue.push_many([(c.task, c.score) for c in [*candidates, *others]])
        for candidate, result in zip([*candidates, *others], results, strict=True):
            self._log_push(candidate.task, result)
        self._group(candidates, others, results)
        if schedule_next:
            self.ensure_schedules([(c.plugin, c.task) for c, r in zip(candidates, results, strict=False)
                                   if r.outcome is PushOutcome.QUEUED and c.plugin.run_on is None], from_ms(now))
        return results

    # -- siblings: one run for several organisations ------------------------------------------------

    def siblings_for(self, organisation: str, candidates: list[Candidate]) -> dict[str, list[Candidate]]:
        """For an organisation that deduplicates (Katalogus' flag), per candidate task id: the same work for
        the organisations whose config of the boefje equals its own (and that deduplicate: Katalogus
        checks) and that hold the object with a scan level the boefje may run at. A lookup that fails
        leaves the work to run once per organisation, as without deduplication."""
        if not candidates or not self._deduplicates(organisation):
            return {}
        found: dict[str, list[Candidate]] = {}
        for candidate in candidates:
            task = candidate.task
            if task.input_ooi is None:
                continue
            try:
                others = self.context.katalogus.get_duplicate_organisations(organisation, task.boefje.id)
                holders = self.context.octopoes.get_object_clients(task.input_ooi, others) if others else {}
                plugins = {other: self._boefje_of(other, ooi, task.boefje.id) for other, ooi in holders.items()}
            except ServiceError as error:
                logger.warning("task %s organisation %s: no deduplication of %s on %s: %s", task.id, organisation,
                               task.boefje.id, task.input_ooi, error,
                               extra=task_fields(task.id, self.kind, organisation))
                continue
            siblings = [Candidate(plugin, BoefjeTask(boefje=task.boefje, input_ooi=task.input_ooi, organization=other,
                                                     deduplication_key=task.id), candidate.score)
                        for other, ooi in sorted(holders.items()) if other != organisation
                        and (plugin := plugins[other]) is not None and plugin.enabled and permits(plugin, ooi)]
            if siblings:
                found[task.id] = siblings
        return found

    def _boefje_of(self, organisation: str, ooi: OOI, boefje_id: str) -> Plugin | None:
        """The organisation's boefje, from the cached list of those consuming the object's type."""
        plugins = self.context.katalogus.get_boefjes_by_ooi_type(organisation, ooi.object_type)
        return next((plugin for plugin in plugins if plugin.id == boefje_id), None)

    def _deduplicates(self, organisation: str) -> bool:
        known = self._deduplicating.get(organisation)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        try:
            found = self.context.katalogus.get_organisation(organisation)
        except ServiceError:
            return False
        flag = bool(found and found.deduplicate)
        self._deduplicating[organisation] = (flag, time.monotonic() + self.settings.katalogus_cache_ttl)
        return flag

    def _group(self, leaders: list[Candidate], others: list[Candidate], results: list[PushResult]) -> None:
        """Make each queued leader and its queued siblings one group in the queue."""
        queued = {c.task.id: r.task_id for c, r in zip([*leaders, *others], results, strict=True)
                  if r.outcome is PushOutcome.QUEUED}
        for leader in leaders:
            members = [queued[c.task.id] for c in others
                       if c.task.deduplication_key == leader.task.id and c.task.id in queued]
            if leader.task.id in queued and members:
                self.queue.group(leader.task.id, [queued[leader.task.id], *members])
                logger.info("task %s organisation %s: %s on %s runs once for %d more organisations",
                            leader.task.id, leader.task.organization, leader.task.boefje.id, leader.task.input_ooi,
                            len(members), extra=task_fields(leader.task.id, self.kind, leader.task.organization))

    def run_states(self, tasks: list[BoefjeTask],
                   known_active: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
                   ) -> list[tuple[bool, int | None]]:
        """Per task: (is a run of this work queued or going, when did its last run end in ms).

        Our own records first, for all tasks in one round trip; Bytes only for work we have no
        record of (runs from before kat_scheduler, or from elsewhere), one request per object.
        A Bytes run without an end is still going."""
        states = [(active is not None, last) for active, last in
                  self.records.activity(((t.organization, t.input_ooi, t.hash) for t in tasks), known_active)]
        unknown: dict[tuple[str, str | None], list[int]] = {}
        for index, (active, last_run) in enumerate(states):
            if not active and last_run is None:
                unknown.setdefault((tasks[index].organization, tasks[index].input_ooi), []).append(index)

        def ask_bytes(work: tuple[tuple[str, str | None], list[int]]) -> dict[str, BoefjeMeta]:
            (organisation, ooi), indexes = work
            boefje_ids = {tasks[i].boefje.id for i in indexes}
            if ooi is None:
                return {b: m for b in boefje_ids if (m := self.context.bytes.get_last_run(organisation, b, None))}
            return self.context.bytes.get_last_runs(organisation, ooi, boefje_ids)

        # One request per object, several at a time: a batch of new objects waits for Bytes once.
        for (_, indexes), runs in zip(unknown.items(), self._lookups.map(ask_bytes, unknown.items()),
                                      strict=True):
            for index in indexes:
                meta = runs.get(tasks[index].boefje.id)
                if meta is not None:
                    states[index] = (True, None) if not meta.ended_at else (False, end_ms(meta.ended_at))
        return states

    def _log_push(self, task: BoefjeTask, result: PushResult) -> None:
        if result.outcome is PushOutcome.QUEUED:
            logger.debug("task %s organisation %s: queued %s on %s", task.id, task.organization,
                         task.boefje.id, task.input_ooi, extra=task_fields(task.id, self.kind, task.organization))
        elif result.outcome is PushOutcome.FULL:
            logger.warning("task %s organisation %s: %s on %s refused, the boefje queue is full", task.id,
                           task.organization, task.boefje.id, task.input_ooi,
                           extra=task_fields(task.id, self.kind, task.organization))

    # -- schedules ----------------------------------------------------------------------------

    def ensure_schedules(self, work: list[tuple[Plugin, BoefjeTask]], now: datetime) -> None:
        """Give queued work a schedule for its next run, or move the deadline of the one it has."""
        if not work:
            return
        existing = self.schedules.get_many_by_hash([task.hash for _, task in work])
        changed, new = [], []
        for plugin, task in work:
            schedule = existing.get(task.hash)
            if schedule is not None:
                self._queued_again(schedule, plugin, now)
                changed.append(schedule)
            else:
                data = task.model_dump(mode="json", exclude={"id"}, exclude_none=True)
                deadline = next_deadline(plugin, now, self.settings.grace_period,
                                         self.settings.schedule_jitter_seconds)
                new.append(self.schedules.build(task.organization, data, task.hash, cron=plugin.cron,
                                                deadline_at=deadline, now=now))
        self.schedules.save_many(changed)
        self.schedules.save_many(new, new=True)  # one that another worker stored meanwhile is kept

    def _next_run(self, schedule: Schedule, plugin: Plugin, now: datetime) -> datetime:
        """The schedule's own cron when it has a valid one, else the plugin's cron, interval or grace period."""
        if schedule.schedule and valid_cron(schedule.schedule):
            return next_cron(schedule.schedule, now)
        return next_deadline(plugin, now, self.settings.grace_period, self.settings.schedule_jitter_seconds)

    def _queued_again(self, schedule: Schedule, plugin: Plugin, now: datetime) -> None:
        """The schedule's work was queued again: its next run comes after this one. What a person set
        through the API stays: their cron (else the plugin's), a deadline they chose, and a disable."""
        kept = set(schedule.person_set)
        if "schedule" not in kept:
            schedule.schedule = plugin.cron
        if "deadline_at" not in kept:
            schedule.deadline_at = self._next_run(schedule, plugin, now)
        if "enabled" not in kept or schedule.enabled:
            schedule.enabled = True  # the scheduler's own disable ends: the work may run again
        schedule.modified_at = now

    def run_due_schedules(self, limit: int) -> int:
        """Take up to `limit` due schedules in deadline order, re-check them, queue what may run, and
        move every deadline forward, also for skipped work. Returns how many were handled.

        The objects are looked up several at a time and the work is queued per organisation in one
        push, so a batch costs a few round trips plus one Octopoes request per object."""
        now_ms = self.now_ms()
        due = self.schedules.due(now_ms, limit)
        tasks = {s.id: BoefjeTask.model_validate({**s.data, "id": new_task_id()}) for s in due}
        objects = dict(zip(
            ((s.organisation, tasks[s.id].input_ooi or "") for s in due),
            self._lookups.map(self._object_or_error, ((s.organisation, tasks[s.id].input_ooi or "") for s in due)),
            strict=True))
        runnable: dict[str, list[tuple[Plugin, str]]] = {}
        for schedule in due:
            task = tasks[schedule.id]
            plugin = self._run_schedule(schedule, task, objects[(schedule.organisation, task.input_ooi or "")], now_ms)
            if plugin is not None:
                runnable.setdefault(task.organization, []).append((plugin, task.input_ooi or ""))
        for organisation, pairs in runnable.items():
            self.push_eligible(organisation, pairs, schedule_next=False)
        self.schedules.save_many(due)
        return len(due)

    def _object_or_error(self, key: tuple[str, str]) -> OOI | Exception | None:
        try:
            return self.context.octopoes.get_object(*key)
        except ServiceError as error:
            return error

    def _run_schedule(self, schedule: Schedule, task: BoefjeTask, ooi: OOI | Exception | None,
                      now_ms: int) -> Plugin | None:
        """Re-check one due schedule and move its deadline; returns the plugin when its work may run."""
        now = from_ms(now_ms)
        schedule.modified_at = now
        try:
            if isinstance(ooi, Exception):
                raise ooi
            problem, plugin = self._recheck(schedule.organisation, task, ooi)
        except TRANSIENT_ERRORS as error:
            schedule.deadline_at = from_ms(now_ms + 300_000)  # try again in five minutes
            logger.warning("schedule %s organisation %s: postponed, %s", schedule.id, schedule.organisation, error)
            return None
        except ServiceError as error:
            problem, plugin = f"cannot be checked: {error}", None
        schedule.person_set = [name for name in schedule.person_set if name != "deadline_at"]  # it came
        if problem or plugin is None:
            schedule.enabled = False  # the scheduler's disable, which a new push of the work ends
            schedule.person_set = [name for name in schedule.person_set if name != "enabled"]
            schedule.deadline_at = from_ms(now_ms + self.settings.grace_period * 1000)
            logger.info("schedule %s organisation %s: disabled, %s", schedule.id, schedule.organisation, problem)
            return None
        schedule.deadline_at = self._next_run(schedule, plugin, now)
        return plugin

    def _recheck(self, organisation: str, task: BoefjeTask, ooi: OOI | None) -> tuple[str | None, Plugin | None]:
        """Why a schedule's work may no longer run (None when it may), and its plugin."""
        primary_key = task.input_ooi or ""
        plugins = self.context.katalogus.get_boefjes_by_ooi_type(organisation, ooi_type_of(primary_key))
        plugin = next((p for p in plugins if p.id == task.boefje.id), None)
        if plugin is None:
            return f"boefje {task.boefje.id} is gone or no longer consumes {ooi_type_of(primary_key)}", None
        if plugin.run_on is not None:
            return f"boefje {plugin.id} runs only on {plugin.run_on} events", None
        if ooi is None:
            return f"object {primary_key} is gone", None
        if not permits(plugin, ooi):
            return f"boefje {plugin.id} is disabled or not permitted at level {ooi.scan_level}", None
        return None, plugin

    # -- boefjes enabled since the last look ----------------------------------------------------

    def refresh_organisations(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Every SCHEDULER_ORGANISATION_REFRESH_SECONDS, look for boefjes enabled since the last look."""
        if time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + self.settings.organisation_refresh_seconds
        for organisation in self.context.katalogus.get_organisations():
            if not keep_going():
                return
            self.discover_new_boefjes(organisation.id)

    def discover_new_boefjes(self, organisation: str) -> list[str]:
        """Compare the organisation's enabled boefjes with those seen before; start passes for new ones."""
        enabled = {p.id for p in self.context.katalogus.get_plugins(organisation)
                   if p.type == "boefje" and p.enabled}
        seen = self.catalogue.seen(organisation)
        new = sorted(enabled - seen)
        self.catalogue.start_jobs(organisation, new)
        self.catalogue.forget(organisation, seen - enabled)
        if new:
            logger.info("organisation %s: new boefjes %s; queueing them for existing objects", organisation, new)
        return new

    def work_on_new_boefjes_for(self, seconds: float, keep_going: Callable[[], bool] = lambda: True) -> int:
        """Visit existing objects for the new boefjes' passes a page at a time for about `seconds` (at
        least one page), while `keep_going()` (the beat: while it still leads). Returns objects visited."""
        until = time.monotonic() + seconds
        visited = 0
        while True:
            done = self.work_on_new_boefjes(NEW_BOEFJE_PAGE)
            visited += done
            if not done or time.monotonic() >= until or not keep_going():
                return visited

    def work_on_new_boefjes(self, budget: int, page_size: int = NEW_BOEFJE_PAGE) -> int:
        """Visit up to `budget` existing objects for the new boefjes' passes; returns objects visited."""
        visited = 0
        for organisation, boefje_id, offset in self.catalogue.jobs():
            plugin = next((p for p in self.context.katalogus.get_plugins(organisation) if p.id == boefje_id), None)
            if plugin is None or not plugin.enabled or plugin.run_on is not None:
                self.catalogue.finish(organisation, boefje_id)  # gone, or runs on mutations only
                continue
            levels = range(plugin.scan_level, 5)
            while visited < budget:
                count, oois = self.context.octopoes.objects_page(
                    organisation, plugin.consumes, levels, offset, min(page_size, budget - visited))
                self.push_eligible(organisation, [(plugin, o.primary_key) for o in oois if permits(plugin, o)])
                offset += len(oois)
                visited += len(oois)
                if not oois or offset >= count:
                    self.catalogue.finish(organisation, boefje_id)
                    logger.info("organisation %s: boefje %s visited all %d existing objects",
                                organisation, boefje_id, count)
                    break
                self.catalogue.advance(organisation, boefje_id, offset)
            if visited >= budget:
                break
        return visited

    # -- manual runs -----------------------------------------------------------------------------

    def push_manual(self, organisation: str, boefje_id: str, primary_key: str) -> PushResult:
        """A person asked for this run: it skips the grace period and goes first, but never twice at once."""
        plugin = self.context.katalogus.get_plugin(organisation, boefje_id)
        if plugin is None or plugin.type != "boefje":
            raise LookupError(f"organisation {organisation} has no boefje {boefje_id!r}")
        ooi = self.context.octopoes.get_object(organisation, primary_key)
        if ooi is None:
            raise LookupError(f"organisation {organisation} has no object {primary_key!r}")
        if not permits(plugin, ooi):
            raise PermissionError(f"boefje {boefje_id} may not run on {primary_key}: it is disabled, does not "
                                  f"consume {ooi.object_type}, or needs scan level {plugin.scan_level} "
                                  f"(the object has {ooi.scan_level})")
        task = boefje_task(plugin, organisation, primary_key)
        now = self.now_ms()
        result = self.queue.push(task, self.ranker.rank(RankingContext(now_ms=now, manual=True)))
        self._log_push(task, result)
        if result.outcome is PushOutcome.QUEUED and plugin.run_on is None:
            self.ensure_schedules([(plugin, task)], from_ms(now))
        return result


def end_ms(ended_at: str) -> int:
    return int(datetime.fromisoformat(ended_at).timestamp() * 1000)
