"""The deployment under test, as subprocesses of this one: start, SIGKILL, restart, tear down.

- its own redis-server on a free loopback port, AOF on (`--appendonly yes --appendfsync everysec`);
- a private virtual host on the machine's RabbitMQ: OpenKAT's queue names (`scan_profile_mutations`,
  `raw_file_received`), Celery's queues and its event and broadcast exchanges are all the run's own,
  and deleting the vhost at the end deletes every one of them;
- the simulated KAT services (services.py);
- `celery -A kat_scheduler beat` twice, `celery -A kat_scheduler worker` (listeners and dispatcher)
  three times, and two reference runners with chaos.runner_handler.
Every process runs in a session of its own, so a kill takes its children too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pika
import pika.exceptions
import redis
from celery import Celery

from chaos import config
from chaos.config import Size
from chaos.services import ServicesProcess
from kat_scheduler.connectors.listeners.openkat import SCAN_PROFILE_MUTATIONS

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CELERY = str(Path(sys.executable).parent / "celery")
RABBITMQ_HOST = os.environ.get("CHAOS_RABBITMQ_HOST", "127.0.0.1:5672")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition` until it answers something true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class Proc:
    """One subprocess with its log file; `kill` is SIGKILL to its whole process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_dir = log_dir
        self.cwd = cwd
        self.generation = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Proc:
        self.generation += 1
        self._log = open(self.log_dir / f"{self.name}.{self.generation}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL after `timeout`."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            except ProcessLookupError:
                pass
        self.kill()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class RedisServer:
    """redis-server on a free loopback port, AOF on; `kill` and `start` again keep port and data."""

    def __init__(self, work_dir: Path, log_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = work_dir / "redis"
        self.data_dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = Proc("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                                   "--dir", str(self.data_dir), "--daemonize", "no"],
                         dict(os.environ), log_dir, work_dir)

    def start(self, timeout: float = 20.0) -> None:
        self.proc.start()
        wait_for(self.ping, timeout, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        self.proc.kill()


class RabbitVhost:
    """A virtual host of the run's own on the machine's RabbitMQ."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"amqp://guest:guest@{RABBITMQ_HOST}/{name}"
        self.created = False

    def create(self) -> None:
        rabbitmqctl("add_vhost", self.name)
        self.created = True
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def delete(self) -> None:
        if self.created:
            rabbitmqctl("delete_vhost", self.name)
            self.created = False

    def queue_state(self, queue: str) -> tuple[int, int] | None:
        """(messages, consumers) of a queue, None when it does not exist or the broker is away."""
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
        except pika.exceptions.AMQPError:
            return None
        try:
            declared = connection.channel().queue_declare(queue, passive=True)
            return int(declared.method.message_count), int(declared.method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return None
        finally:
            if connection.is_open:
                connection.close()


class Deployment:
    """Everything under test. Use as a context manager: leaving it tears everything down."""

    def __init__(self, size: Size, keep: bool = False) -> None:
        self.size = size
        self.keep = keep
        self.run_id = f"chaos-{uuid.uuid4().hex[:8]}"
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self.log_dir = self.work_dir / "logs"
        self.runner_log_dir = self.work_dir / "runner-logs"
        self.log_dir.mkdir()
        self.runner_log_dir.mkdir()
        self.key_prefix = self.run_id
        self.redis = RedisServer(self.work_dir, self.log_dir)
        self.rabbit = RabbitVhost(self.run_id)
        self.services: ServicesProcess | None = None
        self.beats: list[Proc] = []
        self.workers: list[Proc] = []
        self.runners: list[Proc] = []
        self.app: Celery | None = None

    # -- the environment -------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        assert self.services is not None
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEDULER_REDIS_URL": self.redis.url,
            "SCHEDULER_KEY_PREFIX": self.key_prefix,
            "CELERY_BROKER_URL": self.rabbit.url,
            "QUEUE_URI": self.rabbit.url,
            "KATALOGUS_API": self.services.katalogus_url,
            "OCTOPOES_API": self.services.octopoes_url,
            "BYTES_API": self.services.bytes_url,
            "SCHEDULER_LEASE_SECONDS": str(config.TASK_LEASE_SECONDS),
            "SCHEDULER_BEAT_LEASE_SECONDS": str(config.BEAT_LEASE_SECONDS),
            "SCHEDULER_BEAT_TICK_SECONDS": str(config.BEAT_TICK_SECONDS),
            "SCHEDULER_KATALOGUS_REQUEST_TIMEOUT": str(config.SERVICE_TIMEOUT_SECONDS),
            "SCHEDULER_OCTOPOES_REQUEST_TIMEOUT": str(config.SERVICE_TIMEOUT_SECONDS),
            "SCHEDULER_BYTES_REQUEST_TIMEOUT": str(config.SERVICE_TIMEOUT_SECONDS),
            "SCHEDULER_KATALOGUS_CACHE_TTL": str(config.KATALOGUS_CACHE_TTL),
            "SCHEDULER_ORGANISATION_REFRESH_SECONDS": str(config.ORGANISATION_REFRESH_SECONDS),
            "SCHEDULER_RUNNER_HANDLER": "chaos.runner_handler:record",
            "CHAOS_HOLD_SECONDS": str(self.size.hold_seconds),
        }

    def _beat(self, number: int) -> Proc:
        argv = [CELERY, "-A", "kat_scheduler", "beat", "--loglevel", "INFO",
                "-s", str(self.work_dir / f"beat-{number}.schedule")]
        return Proc(f"beat-{number}", argv, self.environment(), self.log_dir, self.work_dir)

    def _worker(self, number: int) -> Proc:
        argv = [CELERY, "-A", "kat_scheduler", "worker", "-P", "solo", "-Q", "chaos-scheduler",
                "-n", f"scheduler-{number}@chaos", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        return Proc(f"scheduler-{number}", argv, self.environment(), self.log_dir, self.work_dir)

    def _runner(self, number: int) -> Proc:
        argv = [CELERY, "-A", "kat_scheduler.runner", "worker", "-Q", "boefjes,normalizers,reports", "-E",
                "-P", "threads", "-c", str(config.RUNNER_CONCURRENCY), "-n", f"runner-{number}@chaos",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        return Proc(f"runner-{number}", argv, self.environment(), self.log_dir, self.work_dir)

    # -- starting ----------------------------------------------------------------------------------

    def start(self) -> None:
        logger.info("run %s in %s", self.run_id, self.work_dir)
        self.redis.start()
        self.rabbit.create()
        self.services = ServicesProcess.start(self.size.organisations, self.size.addresses_per_organisation)
        self.app = Celery("chaos", broker=self.rabbit.url)
        self.app.config_from_object("kat_scheduler.celery_defaults")
        self.runners = [self._runner(n) for n in range(1, config.RUNNERS + 1)]
        self.workers = [self._worker(n) for n in range(1, config.SCHEDULER_WORKERS + 1)]
        self.beats = [self._beat(n) for n in range(1, config.BEATS + 1)]
        for proc in self.runners + self.workers + self.beats:
            self._start(proc)
        for proc in self.runners + self.workers:
            self.wait_ready(proc)
        for proc in self.beats:
            self.wait_beat(proc)
        wait_for(lambda: self.listening() >= config.SCHEDULER_WORKERS, 60, "the scheduler workers' listeners")
        wait_for(self.leader, 60, "a beat to lead")
        logger.info("deployment up: redis %s, vhost %s, %d beats, %d scheduler workers, %d runners",
                    self.redis.url, self.rabbit.name, len(self.beats), len(self.workers), len(self.runners))

    def _start(self, proc: Proc) -> None:
        """Start a process; a runner gets a fresh log file per start (a killed one may end mid-line)."""
        if proc in self.runners:
            log = self.runner_log_dir / f"{proc.name}.{proc.generation + 1}.jsonl"
            proc.env = {**proc.env, "CHAOS_RUNNER_LOG": str(log)}
        proc.start()

    def restart(self, proc: Proc) -> None:
        """Start a killed process again and wait until it is ready."""
        proc.kill()
        self._start(proc)
        if proc in self.beats:
            self.wait_beat(proc)
        else:
            self.wait_ready(proc)

    def wait_beat(self, proc: Proc, timeout: float = 60.0) -> None:
        """A beat is up when its log says it started its scheduler."""
        log = self.log_dir / f"{proc.name}.{proc.generation}.log"

        def started() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited; see {log}")
            return log.exists() and b"beat: Starting" in log.read_bytes()

        wait_for(started, timeout, f"{proc.name} to start")

    def wait_ready(self, proc: Proc, timeout: float = 60.0) -> None:
        """A Celery worker is ready when it answers a ping by its hostname."""
        assert self.app is not None
        hostname = proc.argv[proc.argv.index("-n") + 1]

        def answered() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited; see {self.log_dir}")
            return bool(self.app.control.ping(destination=[hostname], timeout=0.5))  # type: ignore[union-attr]

        wait_for(answered, timeout, f"{proc.name} to answer a ping")

    def listening(self) -> int:
        """Consumers on the mutation queue: the scheduler workers' listeners."""
        state = self.rabbit.queue_state(SCAN_PROFILE_MUTATIONS)
        return state[1] if state else 0

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=2,
                                    socket_connect_timeout=1)

    def leader(self) -> Proc | None:
        """The beat holding the leader lease, by the pid in its token (`host:pid:id`)."""
        client = self.redis_client()
        try:
            token = client.get("{" + f"{self.key_prefix}:beat" + "}:leader")
        except redis.RedisError:
            return None
        finally:
            client.close()
        if not token:
            return None
        pid = int(str(token).split(":")[1])
        return next((beat for beat in self.beats if beat.pid == pid and beat.alive()), None)

    # -- tearing down ------------------------------------------------------------------------------

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def teardown(self) -> None:
        """Kill every process, delete the vhost (and with it every queue of the run) and the temp dir.
        Each step runs whatever the one before did."""
        steps: list[tuple[str, Callable[[], None]]] = [
            *((f"stop {proc.name}", proc.kill) for proc in self.beats + self.workers + self.runners),
            ("close the Celery app", lambda: self.app.close() if self.app else None),
            ("stop the simulated services", lambda: self.services.stop() if self.services else None),
            ("stop redis-server", self.redis.kill),
            ("delete the RabbitMQ vhost", self.rabbit.delete),
        ]
        for what, step in steps:
            try:
                step()
            except Exception:
                logger.exception("teardown: could not %s", what)
        if self.keep:
            logger.warning("kept the run's logs in %s", self.work_dir)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)
