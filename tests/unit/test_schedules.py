"""The schedule store; run on fakeredis here and on the real Redis in tests/integration."""

from datetime import UTC, datetime, timedelta

import pytest
import redis

from kat_scheduler.repositories import DuplicateSchedule, ScheduleRepository
from kat_scheduler.repositories.schedules import to_ms
from tests.factories.tasks import boefje_task

NOW = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def schedules(client: redis.Redis, key_prefix: str) -> ScheduleRepository:
    return ScheduleRepository(client, key_prefix, "boefje")


def schedule_for(schedules: ScheduleRepository, deadline: datetime | None, org: str = "org1", **kw: object):  # type: ignore[no-untyped-def]
    task = boefje_task(org=org)
    return schedules.new(org, task.model_dump(mode="json"), task.hash, deadline_at=deadline, now=NOW, **kw)  # type: ignore[arg-type]


def test_a_schedule_is_stored_and_found_by_id_hash_and_ooi(schedules: ScheduleRepository) -> None:
    schedule = schedule_for(schedules, NOW + timedelta(hours=1), cron="0 * * * *")
    assert schedules.get(schedule.id) == schedule
    assert schedules.get_by_hash(schedule.hash) == schedule
    assert schedules.of_ooi("org1", schedule.data["input_ooi"]) == [schedule]
    assert schedules.count() == 1 and schedules.list() == [schedule]


def test_one_schedule_per_work_identity(schedules: ScheduleRepository) -> None:
    first = schedule_for(schedules, None)
    with pytest.raises(DuplicateSchedule) as duplicate:
        schedules.new("org1", first.data, first.hash, now=NOW)
    assert duplicate.value.holder_id == first.id
    assert schedules.count() == 1


def test_due_schedules_come_in_deadline_order_and_only_when_enabled(schedules: ScheduleRepository) -> None:
    late = schedule_for(schedules, NOW - timedelta(minutes=1))
    later = schedule_for(schedules, NOW - timedelta(minutes=10))
    schedule_for(schedules, NOW + timedelta(minutes=5))  # not due yet
    disabled = schedule_for(schedules, NOW - timedelta(hours=1), enabled=False)
    schedule_for(schedules, None)  # no deadline: never due
    assert [s.id for s in schedules.due(to_ms(NOW), limit=10)] == [later.id, late.id]
    assert [s.id for s in schedules.due(to_ms(NOW), limit=1)] == [later.id]
    assert schedules.due_count(to_ms(NOW)) == 2

    disabled.enabled = True
    schedules.save(disabled)
    assert schedules.due(to_ms(NOW), limit=1)[0].id == disabled.id
    later.deadline_at = NOW + timedelta(days=1)
    schedules.save_many([later])
    assert later.id not in {s.id for s in schedules.due(to_ms(NOW), limit=10)}
    assert schedules.get(later.id).deadline_at == NOW + timedelta(days=1)  # type: ignore[union-attr]


def test_deleting_a_schedule_removes_it_everywhere(schedules: ScheduleRepository) -> None:
    schedule = schedule_for(schedules, NOW - timedelta(minutes=1))
    assert schedules.delete(schedule)
    assert schedules.get(schedule.id) is None and schedules.get_by_hash(schedule.hash) is None
    assert schedules.due(to_ms(NOW), 10) == [] and schedules.count() == 0
    assert schedules.of_ooi("org1", schedule.data["input_ooi"]) == []
    assert not schedules.delete(schedule)
    schedules.new("org1", schedule.data, schedule.hash, now=NOW)  # the identity is free again


def test_deleting_many_schedules_counts_those_that_were_still_there(schedules: ScheduleRepository) -> None:
    first, second = schedule_for(schedules, NOW), schedule_for(schedules, NOW)
    assert schedules.delete(first)
    assert schedules.delete_many([first, second]) == 1 and schedules.count() == 0
    assert schedules.delete_many([]) == 0


def test_changing_the_work_moves_the_identity(schedules: ScheduleRepository) -> None:
    first, second = schedule_for(schedules, None), schedule_for(schedules, None)
    previous = first.hash
    first.hash = second.hash
    with pytest.raises(DuplicateSchedule):
        schedules.save(first, previous_hash=previous)
    first.hash = "f" * 32
    schedules.save(first, previous_hash=previous)
    assert schedules.get_by_hash("f" * 32) == first and schedules.get_by_hash(previous) is None
