"""A connection to Redis on the API's event loop, for the calls of push, pop and a task's PATCH.

A call made on the event loop with the ordinary client holds the loop for a whole round trip, and the
requests of other runners wait behind it. Here a coroutine's call is written out at the end of the
loop's turn, together with every other call made in that turn, and the coroutine awaits its reply
while the loop serves other requests; replies come back in order and each goes to its caller as it
arrives. So Redis runs the calls of one batch while the loop prepares the next.

Only for what it can reproduce exactly: one Redis server over TCP or a Unix socket, with the client's
database, user, password, name, encoding and timeouts, RESP2. For every other client (TLS, Sentinel,
Cluster, fakeredis) `LoopPipe.open_for` answers None, and `LoopPipes.call` makes the call through the
client as before; so it does for a call whose reply was lost with the connection.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis
from redis._parsers.base import BaseParser
from redis.connection import Connection, UnixDomainSocketConnection

logger = logging.getLogger(__name__)

Command = Sequence[str | int | float]
_SUPPORTED = (Connection, UnixDomainSocketConnection)
# Connection settings a pipe cannot honour: a client with any of them set calls through itself.
_UNSUPPORTED_SETTINGS = ("credential_provider", "ssl", "ssl_context", "protocol_version")


class LoopPipe(asyncio.Protocol):
    def __init__(self, settings: dict[str, Any]) -> None:
        self._encoding = settings.get("encoding", "utf-8")
        self._encoding_errors = settings.get("encoding_errors", "strict")
        decode = settings.get("decode_responses", False)
        self._reader = hiredis.Reader(encoding=self._encoding if decode else None, errors=self._encoding_errors)
        self._timeout: float = settings.get("socket_timeout") or 30.0
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watched: asyncio.Future[Any] | None = None  # the oldest call when the watch began
        self.broken = False

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    async def open_for(cls, client: Any) -> LoopPipe | None:
        """A pipe with the connection settings of `client`, or None for a client it cannot stand in for."""
        pool = getattr(client, "connection_pool", None)
        if pool is None or type(client) is not redis.Redis or pool.connection_class not in _SUPPORTED:
            return None
        settings: dict[str, Any] = dict(pool.connection_kwargs)
        if any(settings.get(name) for name in _UNSUPPORTED_SETTINGS) or settings.get("protocol", 2) not in (2, "2"):
            return None
        loop = asyncio.get_running_loop()
        connect_timeout = settings.get("socket_connect_timeout") or settings.get("socket_timeout") or 30.0
        if pool.connection_class is UnixDomainSocketConnection:
            opening = loop.create_unix_connection(lambda: cls(settings), settings["path"])
        else:
            opening = loop.create_connection(lambda: cls(settings), settings.get("host", "localhost"),
                                             settings.get("port", 6379))
        _, pipe = await asyncio.wait_for(opening, connect_timeout)
        await pipe._hello(settings)
        return pipe

    async def _hello(self, settings: dict[str, Any]) -> None:
        """What redis-py's connection says first: who we are and which database."""
        greetings: list[Command] = []
        if settings.get("password"):
            user = settings.get("username")
            greetings.append(("AUTH", user, settings["password"]) if user else ("AUTH", settings["password"]))
        if settings.get("client_name"):
            greetings.append(("CLIENT", "SETNAME", settings["client_name"]))
        if int(settings.get("db") or 0):
            greetings.append(("SELECT", int(settings["db"])))
        for reply in await asyncio.gather(*(self.call(greeting) for greeting in greetings)):
            if isinstance(reply, redis.ResponseError):
                self.close()
                raise reply

    # -- calling ----------------------------------------------------------------------------------

    def call(self, command: Command) -> asyncio.Future[Any]:
        """The reply to `command` (an error reply as its exception, returned, not raised); raises
        redis.ConnectionError when the connection is lost before the reply came."""
        if self.broken or self._transport is None:
            raise redis.ConnectionError("the connection to Redis is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(future)
        if not self._outgoing:
            loop.call_soon(self._write)
        self._outgoing.append(self._pack(command))
        return future

    def _write(self) -> None:
        if self._transport is None or self.broken:
            return
        self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()
        if self._watched is None:
            self._watch()

    def _pack(self, command: Command) -> bytes:
        parts = [b"*%d\r\n" % len(command)]
        for argument in command:
            if isinstance(argument, str):
                data = argument.encode(self._encoding, self._encoding_errors)
            elif isinstance(argument, bytes):
                data = argument
            else:
                data = repr(argument).encode()
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
        return b"".join(parts)

    def _watch(self) -> None:
        """A Redis that stops answering: when the oldest call has waited a socket timeout with no reply
        meanwhile, the connection is dropped and every waiting call fails (redis-py's socket_timeout)."""
        self._watched = self._waiting[0] if self._waiting else None
        if self._watched is not None:
            asyncio.get_running_loop().call_later(self._timeout, self._check)

    def _check(self) -> None:
        if self._watched is not None and self._waiting and self._waiting[0] is self._watched:
            logger.warning("Redis gave no reply within %.1f s; its connection is dropped", self._timeout)
            self.close()
            return
        self._watch()

    def close(self) -> None:
        self.broken = True
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):  # as redis-py's client raises it (NoScriptError, ...)
                reply = BaseParser.parse_error(str(reply))
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, error: Exception | None) -> None:
        self.broken = True
        lost = redis.ConnectionError(f"the connection to Redis was lost: {error or 'closed by Redis'}")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(lost)


class LoopPipes:
    """The pipes of one client: one per event loop, opened on first use and again after its connection
    was lost. `pipes_of(client)` gives every user of a client (the Lua libraries, the task records) the
    same ones, so their calls of one turn of the loop share a write."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[LoopPipe | None]] = \
            weakref.WeakKeyDictionary()
        self._last: tuple[asyncio.AbstractEventLoop, LoopPipe] | None = None  # the API's one loop: asked often

    async def get(self) -> LoopPipe | None:
        """This loop's pipe; None when the client is one a pipe cannot stand in for, or Redis is unreachable
        (then a call through the client says so)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop and not last[1].broken:
            return last[1]
        opening = self._opening.get(loop)
        if opening is None or (opening.done() and (opening.exception() is not None or _broken(opening.result()))):
            opening = self._opening[loop] = loop.create_task(LoopPipe.open_for(self.client))
        if not opening.done():
            await asyncio.wait([opening])  # not cancelled with the request that waits for it
        if opening.exception() is not None:
            return None
        pipe = opening.result()
        if pipe is not None:
            self._last = (loop, pipe)
        return pipe

    async def call(self, command: Command, through_client: Callable[[], Any]) -> Any:
        """The reply to `command` on this loop's pipe, raising an error reply as the client would; without
        a pipe, or when the reply was lost with the connection, `through_client()` (the same call made
        through the client, whose retries reconnect: a call may then run twice, as with those retries)."""
        pipe = await self.get()
        if pipe is None:
            return through_client()
        try:
            reply = await pipe.call(command)
        except redis.ConnectionError:
            return through_client()
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply


_pipes_of_clients: weakref.WeakKeyDictionary[Any, LoopPipes] = weakref.WeakKeyDictionary()


def pipes_of(client: Any) -> LoopPipes:
    pipes = _pipes_of_clients.get(client)
    if pipes is None:
        pipes = _pipes_of_clients[client] = LoopPipes(client)
    return pipes


def _broken(pipe: LoopPipe | None) -> bool:
    return pipe is not None and pipe.broken
