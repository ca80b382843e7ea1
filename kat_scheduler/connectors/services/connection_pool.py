"""Keep-alive HTTP connections to one service, shared by threads, on the standard library's http.client.

Scheduling a new object costs one Bytes request, so a request's client-side CPU bounds how many
scan profile mutations a worker turns into tasks per second. http.client with this pool costs about
half of urllib3's CPU per request (urllib3 re-parses and re-encodes every URL character by
character) and a third of requests'; retries, timeouts and errors stay in HTTPServiceClient.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from urllib.parse import urlsplit


class ConnectionPool:
    """Up to `size` idle keep-alive connections to the host of `base_url`; a request takes one or opens
    a new one. Any failure closes the connection it happened on."""

    def __init__(self, base_url: str, size: int, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.host = parts.hostname
        self.port = parts.port  # a malformed port raises ValueError here, at start-up
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self.size = size
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(self, method: str, target: str, body: str | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send `method` for `target` (path and query below the base URL); the status and the whole body.
        Raises OSError (TimeoutError among them) or http.client.HTTPException when the exchange fails."""
        connection = self._take()
        try:
            connection.request(method, self.base_path + target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return response.status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._open()
            if not _dropped(connection):
                return connection
            connection.close()

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(connection)
                return
        connection.close()

    def _open(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection that has something to read was closed by the server (or is broken)."""
    sock = connection.sock
    if sock is None:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
