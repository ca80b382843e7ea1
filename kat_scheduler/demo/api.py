"""The scheduler's HTTP API served inside the demo, so that its dashboard can be watched while the show
runs and the demo's pull runner can pop over it as OpenKAT's runners do."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from kat_scheduler.context import AppContext
from kat_scheduler.server.app import create_app

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 15.0


@contextmanager
def serving_api(context: AppContext, port: int) -> Iterator[str]:
    """Serve the API on HOST:`port`, or on a free port when that one is taken; yields its base URL."""
    listening = listening_socket(port)
    bound = listening.getsockname()[1]
    if bound != port:
        logger.info("port %d is taken; the demo's API listens on %d", port, bound)
    config = uvicorn.Config(create_app(context), host=HOST, port=bound, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, name="demo-api", daemon=True)
    thread.start()
    try:
        _wait_until_started(server, thread)
        yield f"http://{HOST}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def listening_socket(port: int) -> socket.socket:
    """A socket bound to HOST:`port`, or to a free port when `port` is taken."""
    for candidate in (port, 0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise OSError(f"no free port on {HOST}")


def _wait_until_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the demo's API did not start (see the log file)")
        time.sleep(0.02)
