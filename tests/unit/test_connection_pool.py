"""The service clients' keep-alive connection pool, against a raw socket server that shows what crosses
the wire: how many connections were opened, and what happens when the server drops an idle one."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kat_scheduler.connectors.services import ServiceUnavailable
from kat_scheduler.connectors.services.base import HTTPServiceClient
from kat_scheduler.connectors.services.connection_pool import ConnectionPool
from tests.factories.waiting import wait_for

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class RawServer:
    """Answers every request with OK on a kept-alive connection; `close_after` answers per connection
    before the server closes it (0: never)."""

    close_after: int = 0
    silent: bool = False  # read requests, never answer
    connections: int = 0
    closed: int = 0
    requests: int = 0
    sock: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/api"

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        answered = 0
        with connection:
            while data := connection.recv(65536):
                self.requests += data.count(b"\r\n\r\n")
                if self.silent:
                    continue
                connection.sendall(OK)
                answered += 1
                if answered == self.close_after:
                    break
        self.closed += 1


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(**getattr(request, "param", {}))
    threading.Thread(target=server.serve, daemon=True).start()
    yield server
    server.sock.close()


def test_sequential_requests_share_one_connection(server: RawServer) -> None:
    pool = ConnectionPool(server.url, size=4, timeout=2.0)
    for _ in range(20):
        assert pool.request("GET", "/x?a=1", None, {}) == (200, b"{}")
    assert server.connections == 1 and server.requests == 20
    pool.close()


@pytest.mark.parametrize("server", [{"close_after": 1}], indirect=True)
def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(server: RawServer) -> None:
    pool = ConnectionPool(server.url, size=4, timeout=2.0)
    for count in range(1, 6):
        assert pool.request("GET", "/x", None, {}) == (200, b"{}")
        wait_for(lambda count=count: server.closed == count, timeout=5,
                 what=f"the server closing connection {count}")
    assert server.connections == 5 and server.requests == 5  # no attempt went out on a dead connection
    pool.close()


@pytest.mark.parametrize("server", [{"silent": True}], indirect=True)
def test_a_service_that_does_not_answer_times_out_and_is_named(server: RawServer) -> None:
    client = HTTPServiceClient(server.url, timeout=0.2, retries=1, backoff=0.001)
    with pytest.raises(ServiceUnavailable, match=r"no answer within 0.2s after 2 attempt\(s\)") as failed:
        client._get_json("/health")
    assert server.url + "/health" in str(failed.value) and client.request_count == 2
    client.close()


def test_a_refused_connection_is_retried_then_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # closed again below: nothing listens there
    client = HTTPServiceClient(f"http://127.0.0.1:{port}", timeout=1.0, retries=2, backoff=0.001)
    with pytest.raises(ServiceUnavailable, match=r"connection failed: ConnectionRefusedError after 3"):
        client._get_json("/health")


def test_concurrent_requests_open_more_connections_and_keep_at_most_size(server: RawServer) -> None:
    pool = ConnectionPool(server.url, size=2, timeout=2.0)
    start = threading.Barrier(6)

    def ask() -> None:
        start.wait()
        for _ in range(10):
            assert pool.request("GET", "/x", None, {})[0] == 200

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert server.requests == 60 and len(pool._idle) <= 2
    pool.close()


@pytest.mark.parametrize("url", ["ftp://host/x", "http:///nohost", "http://host:notaport/"])
def test_a_malformed_service_url_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValueError):
        ConnectionPool(url, size=1, timeout=1.0)
