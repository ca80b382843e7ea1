"""Calls to Redis from concurrent coroutines, sent together.

The API serves many runners on one event loop, and a queue operation is one short Lua call. Made on the
event loop, each call would hold the loop for a whole round trip to Redis, and requests would wait on
each other's round trips. Instead a coroutine hands its call to the batcher's thread and awaits the
reply: the thread sends every call waiting at that moment on one connection, reads their replies and
hands them back, while the loop goes on serving other requests. Under load one round trip carries the
calls of many requests; a lone call pays a hop to the thread and back.

Each call is still atomic on its own and runs in the order it was handed over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis

logger = logging.getLogger(__name__)

_forks = [0]  # forks of this process so far (a child's batchers belong to its parent)


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)

Keys = Sequence[str]
Args = Sequence[Any]
Send = Callable[[Keys, list[Args]], list[Any]]  # calls with these keys -> a reply or error reply for each


class CallBatcher:
    """Runs `send` on a thread of its own for the calls handed to `call`, batched by their keys."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._waiting: deque[tuple[Keys, Args, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = deque()
        self._wake = threading.Event()
        self._generation = _forks[0]
        self._thread = threading.Thread(target=self._serve, name="kat-scheduler redis calls", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """False in a forked child, which has the batcher but not its thread (the thread itself never
        stops: _run hands every error to the callers)."""
        return self._generation == _forks[0]

    async def call(self, keys: Keys, args: Args) -> Any:
        """The call's reply; raises its error reply, or what sending it raised (StoreUnavailable)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((keys, args, loop, future))
        self._wake.set()
        reply = await future
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            batch = []
            while self._waiting:
                batch.append(self._waiting.popleft())
            if batch:
                self._run(batch)

    def _run(self, batch: list[tuple[Keys, Args, asyncio.AbstractEventLoop, asyncio.Future[Any]]]) -> None:
        by_keys: dict[tuple[str, ...], list[int]] = {}
        for n, (keys, _, _, _) in enumerate(batch):
            by_keys.setdefault(tuple(keys), []).append(n)
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)  # (failed, reply or exception)
        for keys, positions in by_keys.items():
            try:
                replies = self._send(keys, [batch[n][1] for n in positions])
                for n, reply in zip(positions, replies, strict=True):
                    outcomes[n] = (False, reply)
            except BaseException as error:  # handed to the callers, which raise it
                for n in positions:
                    outcomes[n] = (True, error)
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, _, loop, future), (failed, outcome) in zip(batch, outcomes, strict=True):
            settled.setdefault(loop, []).append((future, failed, outcome))
        for loop, items in settled.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # that loop has closed: nobody waits for these replies any more
                logger.debug("replies to %d Redis call(s) dropped: their event loop has closed", len(items))


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, failed, outcome in items:
        if future.done():  # the request was cancelled (its client went away)
            continue
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
