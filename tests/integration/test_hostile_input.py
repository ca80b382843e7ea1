"""Hostile input at both edges, on the real Redis and RabbitMQ: each is refused with a clear reason,
nothing is written, the process lives on, and another organisation's tasks and schedules are untouched.

The API runs as `kat-scheduler api` in a process of its own, so that a crash would show as a dead
process rather than a failed test thread."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kat_scheduler.connectors.listeners import RawFileReceivedListener, ScanProfileMutationListener
from kat_scheduler.models import RawFileReceived, ScanProfileMutation
from tests.factories.api_server import api_server_of_its_own
from tests.factories.rabbitmq_fixtures import TestPublisher
from tests.factories.waiting import wait_for
from tests.integration.test_listeners import mutation, running

pytestmark = pytest.mark.integration

VICTIM = "victim"
OOI = "Hostname|internet|victim.example"


def boefje_data(org: str, boefje: str = "dns-records", ooi: str = OOI, **extra: Any) -> dict[str, Any]:
    return {"boefje": {"id": boefje}, "input_ooi": ooi, "organization": org, **extra}


def normalizer_data(org: str, arguments: Any = None, meta_id: str | None = None) -> dict[str, Any]:
    meta = {"id": meta_id or str(uuid.uuid4()), "boefje": {"id": "dns-records"}, "input_ooi": OOI,
            "organization": org, "arguments": arguments or {}}
    return {"normalizer": {"id": "kat_dns_normalize"},
            "raw_data": {"id": str(uuid.uuid4()), "boefje_meta": meta, "mime_types": [{"value": "boefje/dns"}]}}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


class Silent:
    """A TCP server that accepts connections and never answers: a service that hangs."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(100)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def close(self) -> None:
        self.socket.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


@pytest.fixture(scope="module")
def base(silent: Silent, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"KATALOGUS_API": silent.url, "OCTOPOES_API": silent.url, "BYTES_API": silent.url,
           "SCHEDULER_KATALOGUS_REQUEST_TIMEOUT": "20"}
    with api_server_of_its_own(env, tmp_path_factory.mktemp("api"), "kat-hostile") as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture
def victim(http: httpx.Client) -> Iterator[dict[str, Any]]:
    """Another organisation's queued task and schedule, checked unchanged after every hostile request."""
    org = f"{VICTIM}-{uuid.uuid4().hex[:6]}"
    task = http.post("/schedulers/boefje/push", json={"organisation": org, "data": boefje_data(org)})
    schedule = http.post("/schedules", json={"scheduler_id": "boefje", "organisation": org,
                                             "data": boefje_data(org, boefje="nmap"), "schedule": "0 3 * * *"})
    assert task.status_code == 201 and schedule.status_code == 201, (task.text, schedule.text)
    before = {"task": task.json(), "schedule": schedule.json()}
    yield before
    after_task = http.get(f"/tasks/{before['task']['id']}").json()
    after_schedule = http.get(f"/schedules/{before['schedule']['id']}").json()
    assert after_task["status"] == "queued" and after_task["data"] == before["task"]["data"]
    assert after_schedule == before["schedule"]
    assert http.get("/health").status_code == 200  # the API process lives


def listing_of(http: httpx.Client, org: str) -> int:
    answer = http.post("/tasks?limit=0", json={"filters": [{"column": "organisation", "operator": "==",
                                                            "value": org}]})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["count"])


def test_text_that_is_not_unicode_is_refused_everywhere(http: httpx.Client, victim: dict[str, Any]) -> None:
    org = "hostile"
    surrogate = '"\\udfff"'
    bodies = [
        ("/schedulers/boefje/push", '{"organisation": "hostile", "data": {"boefje": {"id": "dns"}, '
                                    f'"input_ooi": {surrogate}, "organization": "hostile"}}}}'),
        ("/schedulers/boefje/push", '{"organisation": "hostile", "data": {"boefje": {"id": '
                                    f'{surrogate}}}, "organization": "hostile"}}}}'),
        ("/schedulers/normalizer/push", json.dumps({"organisation": org, "data": normalizer_data(org)})
         .replace('"kat_dns_normalize"', surrogate)),
        ("/schedules", '{"scheduler_id": "boefje", "organisation": "hostile", "data": {"boefje": {"id": "dns"}, '
                       f'"input_ooi": {surrogate}, "organization": "hostile"}}}}'),
    ]
    for path, body in bodies:
        answer = http.post(path, content=body.encode(), headers={"content-type": "application/json"})
        assert answer.status_code == 400, (path, answer.text)
        assert "surrogate" in answer.json()["detail"]
    assert listing_of(http, org) == 0


def test_deeply_nested_payloads_are_refused_before_anything_is_stored(http: httpx.Client,
                                                                      victim: dict[str, Any]) -> None:
    org = "deep"
    for depth in (40, 199, 254):
        pushed = http.post("/schedulers/normalizer/push",
                           json={"organisation": org, "data": normalizer_data(org, nested(depth))})
        assert pushed.status_code == 400, pushed.text
        scheduled = http.post("/schedules", json={"scheduler_id": "normalizer", "organisation": org,
                                                  "data": normalizer_data(org, nested(depth))})
        assert scheduled.status_code == 400, scheduled.text
    assert listing_of(http, org) == 0
    fine = http.post("/schedulers/normalizer/push",
                     json={"organisation": org, "data": normalizer_data(org, nested(20))})
    assert fine.status_code == 201
    assert http.post("/schedulers/normalizer/pop?limit=10").status_code == 200
    assert http.get("/tasks").status_code == 200 and http.get("/schedules").status_code == 200
    assert http.post("/schedules/search", json={"filters": []}).status_code == 200


def test_organisation_ids_outside_the_slug_alphabet_are_refused(http: httpx.Client, victim: dict[str, Any]) -> None:
    target = victim["task"]["organisation"]
    for org in (f"{target}:URL|internet|http", "Acme", "a b", "x" * 33, "org{1}"):
        answer = http.post("/schedulers/boefje/push", json={"organisation": org, "data": boefje_data(org)})
        assert answer.status_code == 400 and answer.json()["field"] == "organisation", answer.text


def test_work_of_two_organisations_never_shares_an_identity(http: httpx.Client) -> None:
    suffix = uuid.uuid4().hex[:6]
    corp, udp_corp = f"corp{suffix}", f"udp-corp{suffix}"
    first = http.post("/schedulers/boefje/push",
                      json={"organisation": corp, "data": boefje_data(corp, boefje=f"nmap-udp-{suffix}")})
    second = http.post("/schedulers/boefje/push",
                       json={"organisation": udp_corp, "data": boefje_data(udp_corp, boefje=f"nmap-{suffix}")})
    assert first.status_code == 201 and second.status_code == 201, second.text
    assert first.json()["hash"] != second.json()["hash"]
    schedules = [http.post("/schedules", json={"scheduler_id": "boefje", "organisation": org, "data": data})
                 for org, data in ((corp, first.json()["data"]), (udp_corp, second.json()["data"]))]
    assert [s.status_code for s in schedules] == [201, 201], schedules[1].text


def test_a_task_id_names_one_task_in_every_spelling_and_every_queue(http: httpx.Client,
                                                                    victim: dict[str, Any]) -> None:
    task_id = uuid.uuid4()
    org = "speller"
    pushed = http.post("/schedulers/boefje/push", json={"organisation": org, "data": boefje_data(
        org, ooi="Hostname|internet|speller.example", id=str(task_id).upper())})
    assert pushed.status_code == 201 and pushed.json()["id"] == str(task_id)
    for spelling in (f"{{{task_id}}}", f"urn:uuid:{task_id}", f" {task_id} "):
        again = http.post("/schedulers/boefje/push", json={"organisation": org, "data": boefje_data(
            org, ooi=f"Hostname|internet|{uuid.uuid4().hex}.example", id=spelling)})
        assert again.status_code == 409, again.text
    victim_id = victim["task"]["id"]
    other_queue = http.post("/schedulers/normalizer/push", json={"organisation": org, "data": {
        **normalizer_data(org), "id": victim_id}})
    assert other_queue.status_code == 409 and "boefje" in other_queue.json()["detail"]


def test_health_of_hanging_services_never_holds_the_api(http: httpx.Client, base: str) -> None:
    answers: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            answers.append(client.get("/health?externals=true"))

    askers = [threading.Thread(target=ask) for _ in range(40)]
    for asker in askers:
        asker.start()
    schedulers = http.get("/schedulers", timeout=5)  # would wait on every worker thread if health held them
    assert schedulers.status_code == 200
    for asker in askers:
        asker.join(30)
    assert len(answers) == 40
    body = answers[0].json()
    assert body["externals"]["katalogus"] is False and body["healthy"] is True
    assert all(a.elapsed.total_seconds() < 5 for a in answers), max(a.elapsed for a in answers)


def test_requests_that_would_hold_the_api_are_refused(http: httpx.Client) -> None:
    many = [{"column": "organisation", "operator": "==", "value": f"o{n}"} for n in range(51)]
    assert http.post("/schedules/search", json={"filters": many}).status_code == 400
    assert http.post("/tasks", json={"filters": many}).status_code == 400
    values = [{"column": "data", "field": "boefje__id", "operator": "in", "value": [str(n) for n in range(600)]}] * 2
    assert http.post("/tasks", json={"filters": values}).status_code == 400
    assert http.get("/tasks?offset=10001").status_code == 400


# -- the RabbitMQ edge ---------------------------------------------------------------------------------


def deeply_nested_mutation(depth: int = 1000) -> bytes:
    return ('{"operation": "update", "client_id": "org1", "primary_key": "x", "value": ' + "[" * depth
            + "]" * depth + "}").encode()


@pytest.mark.parametrize("batch", [False, True], ids=["one by one", "in batches"])
def test_a_hostile_message_is_dead_lettered_and_the_good_ones_around_it_handled(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher, batch: bool
) -> None:
    rabbit_publisher.declare(rabbit_queue)
    for n in range(5):
        rabbit_publisher.publish(rabbit_queue, mutation(n))
    rabbit_publisher.publish(rabbit_queue, deeply_nested_mutation())
    victim_key = "URL|internet|http://victim.example/"
    rabbit_publisher.publish(rabbit_queue, {"operation": "delete", "client_id": "acme:URL|internet|http",
                                            "primary_key": "//victim.example/"})
    for n in range(5, 10):
        rabbit_publisher.publish(rabbit_queue, mutation(n))
    handled: list[ScanProfileMutation] = []
    listener = ScanProfileMutationListener(rabbitmq_url, handled.append, queue_name=rabbit_queue,
                                           batch_handler=handled.extend if batch else None, batch_size=20)
    with running(listener):
        wait_for(lambda: len(handled) == 10 and listener.dead_lettered == 2, 20, "10 handled, 2 dead")
        # The listener goes on: a message published now is handled too.
        rabbit_publisher.publish(rabbit_queue, mutation(10))
        wait_for(lambda: len(handled) == 11, 20, "the next message handled")
    assert {m.client_id for m in handled} == {"org1"} and victim_key not in {m.primary_key for m in handled}
    reasons = [entry[0].headers["x-dead-reason"] for entry in
               (rabbit_publisher.get(f"{rabbit_queue}.dead") for _ in range(2)) if entry]
    assert len(reasons) == 2 and all(r.startswith("malformed: ") for r in reasons)
    assert any("client_id" in r for r in reasons)
    assert rabbit_publisher.message_count(rabbit_queue) == 0


def test_a_raw_file_with_thousands_of_mime_types_is_dead_lettered(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher
) -> None:
    rabbit_publisher.declare(rabbit_queue)
    data = normalizer_data("org1")["raw_data"]
    data["mime_types"] = [{"value": f"type/{n}"} for n in range(2000)]
    rabbit_publisher.publish(rabbit_queue, {"organization": "org1", "raw_data": data})
    handled: list[RawFileReceived] = []
    listener = RawFileReceivedListener(rabbitmq_url, handled.append, queue_name=rabbit_queue)
    with running(listener):
        wait_for(lambda: listener.dead_lettered == 1, 20, "the raw file dead-lettered")
    assert handled == []
    entry = rabbit_publisher.get(f"{rabbit_queue}.dead")
    assert entry and "mime_types" in entry[0].headers["x-dead-reason"]
