"""Our Lua files as Redis functions, and as scripts on a Redis without functions. These tests run on
fakeredis here and again on the real Redis in tests/integration/test_lua_library_redis.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from kat_scheduler.leadership import Leadership
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import PushOutcome
from kat_scheduler.queues.lua_library import LuaLibrary
from kat_scheduler.queues.priority_queue import PUSH_CHUNK, QUEUE_LUA
from kat_scheduler.repositories.schedules import ScheduleRepository
from tests.factories.tasks import boefje_task, make_queue

REFUSALS = {
    "Redis 6": redis.ResponseError("unknown command 'FUNCTION', with args beginning with: 'LOAD'"),
    "an ACL without FUNCTION": redis.exceptions.NoPermissionError(
        "this user has no permissions to run the 'function|load' command"),
}


def _without_functions(client: redis.Redis, monkeypatch: pytest.MonkeyPatch, refusal: str = "Redis 6") -> None:
    """Make `client` answer FUNCTION LOAD as Redis 6, or an ACL that allows scripts only, does."""
    def refuse(*_: Any, **__: Any) -> None:
        raise REFUSALS[refusal]

    monkeypatch.setattr(client, "function_load", refuse)


def test_the_library_is_named_after_its_file_and_content(client: redis.Redis, tmp_path: Path) -> None:
    first, again = LuaLibrary(client, QUEUE_LUA), LuaLibrary(client, QUEUE_LUA)
    assert first.name == again.name and first.name.startswith("kat_queue_")
    changed = tmp_path / "queue.lua"
    changed.write_text(QUEUE_LUA.read_text() + "\n-- another version\n")
    assert LuaLibrary(client, changed).name != first.name  # two versions can share one Redis
    first.load()
    again.load()  # loading again is harmless


def test_queue_operations_run_as_functions(client: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    assert queue.push(boefje_task(), 1).outcome is PushOutcome.QUEUED
    assert queue._lua._as_function is True


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_redis_without_functions_runs_the_same_files_as_scripts(
        client: redis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    _without_functions(client, monkeypatch, refusal)
    queue = make_queue(client, key_prefix)
    task = boefje_task()
    assert queue.push(task, 1).outcome is PushOutcome.QUEUED
    assert queue._lua._as_function is False
    assert queue.push(task, 1).outcome is PushOutcome.DUPLICATE
    [claimed] = queue.claim()
    assert claimed.id == task.id and queue.ack(task.id) == "ok"
    assert queue.records.get(task.id).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    many = [(boefje_task(ooi=f"Hostname|internet|h{n}.example"), 1) for n in range(PUSH_CHUNK + 10)]
    assert all(result.accepted for result in queue.push_many(many))  # streamed, raw EVALSHA commands
    assert queue.size() == PUSH_CHUNK + 10

    schedules = ScheduleRepository(client, key_prefix, "boefje")
    scheduled = boefje_task()
    schedule = schedules.new("org1", scheduled.model_dump(mode="json"), scheduled.hash)
    assert schedules.get(schedule.id) == schedule
    leadership = Leadership(client, "{" + f"{key_prefix}:beat" + "}:leader", 5.0)
    assert leadership.hold() is True and leadership.renew() is True


def test_other_load_errors_are_not_hidden(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise redis.ResponseError("Error registering functions: ERR user_function:3: syntax error")

    monkeypatch.setattr(client, "function_load", broken)
    with pytest.raises(redis.ResponseError, match="syntax error"):
        LuaLibrary(client, QUEUE_LUA).load()


def test_a_redis_that_lost_its_functions_gets_them_again(client: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    assert queue.push(boefje_task(), 1).accepted
    client.function_delete(queue._lua.name)  # as after a restart without persistence
    assert queue.push(boefje_task(), 1).accepted
    client.function_delete(queue._lua.name)
    many = [(boefje_task(ooi=f"Hostname|internet|h{n}.example"), 1) for n in range(2 * PUSH_CHUNK)]
    assert all(result.accepted for result in queue.push_many(many))  # streamed calls redone one by one
    assert queue.size() == 2 + 2 * PUSH_CHUNK
