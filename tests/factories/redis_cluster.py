"""A local Redis Cluster for tests: three masters on loopback ports, started once per session.

`redis_cluster_url` starts the `redis-server` processes in a temporary directory, joins them with
`redis-cli --cluster create`, waits until every node says `cluster_state:ok` and stops them at the
end. The tests skip, saying why, only when redis-server cannot start here. `cluster_client` is a
client of that cluster (from `connect`) whose test's keys are deleted afterwards.

`redis_sentinel_url` likewise starts one Redis and one Sentinel that watches it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import redis

from kat_scheduler.queues import connect
from tests.factories.redis_fixtures import delete_prefixed

MASTERS = 3
START_SECONDS = 30.0
CLUSTER_BUS_OFFSET = 10_000  # a node also listens on port + 10000 for the other nodes


def free_ports(count: int) -> list[int]:
    """Free loopback ports, all different, each with port + 10000 free too (a cluster node's bus port)."""
    taken: set[int] = set()
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        bus = port + CLUSTER_BUS_OFFSET
        if bus > 65535 or {port, bus} & taken or not _bindable(bus):
            continue
        taken |= {port, bus}
        ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def poll(condition: Callable[[], bool], timeout: float) -> bool:
    """True as soon as `condition` holds; False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _answers(port: int, check: Callable[[redis.Redis], bool]) -> bool:
    node = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
    try:
        return check(node)
    except redis.RedisError:
        return False
    finally:
        node.close()


def _started_or_exited(process: subprocess.Popen[bytes], port: int) -> bool:
    return process.poll() is not None or _answers(port, lambda node: bool(node.ping()))


def _cluster_ok(node: redis.Redis) -> bool:
    return bool(node.execute_command("CLUSTER INFO")["cluster_state"] == "ok")


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`redis+cluster://` URL of a running three-master cluster."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("Redis Cluster tests need redis-server and redis-cli on the PATH")
    directory: Path = tmp_path_factory.mktemp("redis-cluster")
    ports = free_ports(MASTERS)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            with open(directory / f"redis-{port}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [server, "--cluster-enabled", "yes", "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
                     "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--daemonize", "no"],
                    cwd=directory, stdout=log, stderr=subprocess.STDOUT))
        for port, process in zip(ports, processes, strict=True):
            if not poll(partial(_started_or_exited, process, port), START_SECONDS) or process.poll() is not None:
                log_tail = (directory / f"redis-{port}.log").read_text(errors="replace")[-500:]
                pytest.skip(f"redis-server cannot start a cluster node on port {port}: {log_tail or 'no output'}")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports), "--cluster-replicas", "0",
             "--cluster-yes"], capture_output=True, text=True, timeout=START_SECONDS, check=False)
        assert created.returncode == 0, f"redis-cli --cluster create failed: {created.stdout}{created.stderr}"
        assert poll(lambda: all(_answers(port, _cluster_ok) for port in ports), START_SECONDS), \
            f"the cluster on ports {ports} did not reach cluster_state:ok within {START_SECONDS} s"
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/"
    finally:
        for process in processes:
            process.kill()
            process.wait()


@pytest.fixture
def cluster_client(redis_cluster_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A cluster client (typed as redis.Redis, as `connect` gives it); the test's keys go afterwards."""
    client = connect(redis_cluster_url)
    yield client
    delete_prefixed(client, key_prefix)
    client.close()


SENTINEL_SERVICE = "kat-test"


@pytest.fixture(scope="session")
def redis_sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`redis+sentinel://` URL of a Sentinel watching a Redis master named SENTINEL_SERVICE."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("Sentinel tests need redis-server on the PATH")
    directory: Path = tmp_path_factory.mktemp("redis-sentinel")
    master_port, sentinel_port = free_ports(2)
    config = directory / "sentinel.conf"  # Sentinel rewrites its configuration file as it learns
    config.write_text(f"port {sentinel_port}\nbind 127.0.0.1\n"
                      f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 1\n")
    commands = {master_port: [server, "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"],
                sentinel_port: [server, str(config), "--sentinel"]}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port, command in commands.items():
            with open(directory / f"redis-{port}.log", "wb") as log:
                processes.append(subprocess.Popen(command, cwd=directory, stdout=log, stderr=subprocess.STDOUT))
        for port, process in zip(commands, processes, strict=True):
            if not poll(partial(_started_or_exited, process, port), START_SECONDS) or process.poll() is not None:
                log_tail = (directory / f"redis-{port}.log").read_text(errors="replace")[-500:]
                pytest.skip(f"redis-server cannot start on port {port}: {log_tail or 'no output'}")
        assert poll(lambda: _answers(sentinel_port, lambda node: node.sentinel_get_master_addr_by_name(
            SENTINEL_SERVICE) == ("127.0.0.1", master_port)), START_SECONDS), "the Sentinel did not name the master"
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/{SENTINEL_SERVICE}/0"
    finally:
        for process in processes:
            process.kill()
            process.wait()
