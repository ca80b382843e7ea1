"""Our Lua files, run as Redis Functions, or as scripts where Redis has no functions.

Each `.lua` file ends by defining `local function main(keys, args)`. On Redis 7 and later the file is
loaded once as a function library (FUNCTION LOAD) and every call is an FCALL: Redis runs only the
called function, not the whole file again as it does for EVALSHA, which makes a single queue
operation noticeably cheaper (docs/queue.md, "Lua in Redis"). Redis 6 has no functions; there the
same file runs as a script (EVALSHA), with the same results.

The library and function names carry a digest of the file, so two versions of kat_scheduler can
share a Redis during an upgrade, and loading is idempotent. A Redis that lost its functions (a
restart without persistence, FUNCTION FLUSH) gets the library again on the next call.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from kat_scheduler.loop_pipe import pipes_of
from kat_scheduler.store import StoreClient

Arg = str | int | float
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)

# Each thread keeps one connection of each pool for its calls instead of taking one from the pool and
# giving it back every time: the pool's checks on taking and returning cost more system calls than the
# call itself, and a thread never has two calls in flight. A forked child starts without any.
_held = threading.local()
os.register_at_fork(after_in_child=_held.__dict__.clear)


def held_connection(pool: Any) -> Any:
    """This thread's connection of `pool`, taken from the pool the first time."""
    by_pool: dict[int, tuple[Any, Any]] = _held.__dict__.setdefault("by_pool", {})
    held = by_pool.get(id(pool))
    if held is None or held[0] is not pool:
        held = by_pool[id(pool)] = (pool, pool.get_connection())
    return held[1]


def drop_held_connection(pool: Any, connection: Any) -> None:
    """After a failure: the connection is closed and goes back to its pool; the next call takes another."""
    connection.disconnect()
    _held.__dict__.get("by_pool", {}).pop(id(pool), None)
    pool.release(connection)


class LuaLibrary:
    """One `.lua` file, callable with keys and arguments, as a function or (Redis 6) as a script."""

    def __init__(self, client: redis.Redis | StoreClient, path: Path) -> None:
        """With a StoreClient, a call that cannot reach Redis raises that store's StoreUnavailable."""
        self.store = client if isinstance(client, StoreClient) else StoreClient(client, f"lua {path.stem}")
        self.client: Any = self.store.raw
        client = self.client
        source = path.read_text()
        self.name = f"kat_{path.stem}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"
        self.library_code = f"#!lua name={self.name}\n{source}\nredis.register_function('{self.name}', main)\n"
        # As a script, the file's own locals (some files name one ARGV) must not hide the script's globals.
        self.script_code = f"local main = (function()\n{source}\nreturn main\nend)()\nreturn main(KEYS, ARGV)\n"
        self._script = client.register_script(self.script_code)
        self._as_function: bool | None = None  # unknown until the first load
        self._lock = threading.Lock()
        self._pipes = pipes_of(self.client)  # each event loop's connection, for call_batched

    def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        [reply] = self.call_many(keys, (args,))
        return reply

    def call_many(self, keys: Sequence[str], arg_lists: Iterable[Sequence[Arg]]) -> list[Any]:
        with self.store.guard():
            return self._call_many(keys, arg_lists)

    async def call_batched(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The call, from a coroutine: sent with the other calls of this turn of the event loop on a
        connection of the loop's (loop_pipe.py), so that the loop serves other requests meanwhile. For a
        client a pipe cannot stand in for (TLS, Sentinel, Cluster, fakeredis), made at once, as __call__."""
        with self.store.guard():
            self.ensure_loaded()
        try:
            return await self._pipes.call(self._command(keys, args), lambda: self(keys, args))
        except redis.ResponseError as error:
            if not is_missing(error):
                raise
            with self.store.guard():
                self.load()  # Redis lost its functions meanwhile
            return self(keys, args)

    def _call_many(self, keys: Sequence[str], arg_lists: Iterable[Sequence[Arg]]) -> list[Any]:
        """Call once per argument list, on one connection of the client's pool: each call is sent as soon
        as `arg_lists` yields it and the replies are read at the end, so Redis runs one call while
        Python builds the next. Each call is atomic on its own. Raises the first error reply.

        The pooled connection skips redis-py's per-command machinery, a good part of a single call's
        cost on the client. Calls left without a reply (a connection that failed, or a cluster client,
        which has no single pool) go through the client, whose retries with backoff reconnect; as with
        redis-py's own retries, a call whose reply was lost may then run twice."""
        self.ensure_loaded()
        arg_lists = iter(arg_lists)
        sent: list[Sequence[Arg]] = []
        replies: list[Any] = []
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            self._stream(pool, keys, arg_lists, sent, replies)
        sent += arg_lists  # what was not sent: all of it for a cluster client
        replies += [self._through_client(keys, args) for args in sent[len(replies):]]
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, redis.ResponseError) and is_missing(reply)]
        if missing:
            self.load()  # Redis lost its functions meanwhile
            for n in missing:
                replies[n] = self._through_client(keys, sent[n])
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def _stream(self, pool: Any, keys: Sequence[str], arg_lists: Iterator[Sequence[Arg]],
                sent: list[Sequence[Arg]], replies: list[Any]) -> None:
        """Send the calls on one pooled connection and read their replies (error replies included) into
        `replies`; a connection failure stops it, leaving the rest of `sent` without a reply."""
        try:
            connection = held_connection(pool)
        except CONNECTION_ERRORS:
            return
        try:
            for args in arg_lists:
                sent.append(args)
                connection.send_command(*self._command(keys, args))
            for _ in sent:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
        except CONNECTION_ERRORS:
            drop_held_connection(pool, connection)
        except BaseException:  # replies may be left unread on the connection: it cannot serve another call
            drop_held_connection(pool, connection)
            raise

    def _through_client(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The call through redis-py's client (its retries included); an error reply is returned."""
        try:
            if self._as_function:
                return self.client.fcall(self.name, len(keys), *keys, *args)
            return self._script(keys=list(keys), args=list(args))
        except redis.ResponseError as error:
            return error

    def ensure_loaded(self) -> None:
        if self._as_function is None:
            self.load()

    def load(self) -> None:
        """Load the library (on every primary of a cluster). On a Redis without functions, or a Redis user
        not allowed FUNCTION LOAD (an ACL that permits scripts only), use the script instead."""
        with self._lock:
            try:
                self.client.function_load(self.library_code, replace=True)
                self._as_function = True
            except redis.ResponseError as error:
                if not isinstance(error, redis.exceptions.NoPermissionError) and \
                        "unknown command" not in str(error).lower():
                    raise
                self.client.script_load(self.script_code)
                self._as_function = False

    def _command(self, keys: Sequence[str], args: Sequence[Arg]) -> tuple[Arg, ...]:
        if self._as_function:
            return ("FCALL", self.name, len(keys), *keys, *args)
        return ("EVALSHA", self._script.sha, len(keys), *keys, *args)


def is_missing(error: Exception) -> bool:
    """Redis answered that it does not have our function or script (it restarted or was flushed)."""
    return isinstance(error, redis.exceptions.NoScriptError) or (
        isinstance(error, redis.ResponseError) and "function not found" in str(error).lower())
