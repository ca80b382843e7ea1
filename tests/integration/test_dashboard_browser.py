"""The dashboard in a real browser: headless Chromium, driven by Selenium through Debian's ChromeDriver,
against `kat-scheduler api` on a seeded real Redis with a token set.

It is refused without the token, opens after signing in, shows the queue's own figures, and its requeue
button (confirmed in the browser's dialog) puts a dead letter back in the queue. The screenshot it
takes is the one in docs/operations.md: set KAT_DASHBOARD_SCREENSHOT to a path to keep it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.leadership import Leadership
from kat_scheduler.models import TaskStatus
from kat_scheduler.rankers import BoefjeRanker, RankingContext
from kat_scheduler.repositories.queue_samples import QueueSample, QueueSamples
from kat_scheduler.repositories.runner_presence import CELERY, PULL, RunnerPresence
from tests.factories.api_server import api_server
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.tasks import FakeClock, boefje_task
from tests.factories.waiting import wait_for

TOKEN = "browser-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip("selenium.webdriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI runs the dashboard's browser test: install Debian's chromium and chromium-driver")
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402  (after the skip: selenium may be missing)


@pytest.fixture
def seeded(real_redis: redis.Redis, key_prefix: str) -> Iterator[AppContext]:
    """An hour of work ending now: four organisations (org0 pushing the most) with queued work, tasks
    completed every minute and the samples the beat takes; then a manual run, a running task, a dead
    letter, a beat leader and two runners."""
    clock = FakeClock(int(time.time() * 1000) - 3_600_000)
    context = AppContext.create(load_settings(redis_url=REDIS_URL, key_prefix=key_prefix, max_attempts=1),
                                redis_client=real_redis, clock_ms=clock)
    queue, ranker = context.queues["boefje"], BoefjeRanker()
    samples = QueueSamples(real_redis, key_prefix, "boefje")
    for minute in range(60):
        for organisation in ["org0"] * 3 + ["org1"] if minute < 30 else ["org1", "org2", "org3"]:
            queue.push(boefje_task(org=organisation, boefje="nmap"), ranker.rank(RankingContext(clock())))
        for claimed in queue.claim(2):
            queue.ack(claimed.id)
        stats = queue.stats()
        samples.add(QueueSample(clock(), queue.size(), queue.in_flight(), stats.get("completed", 0)))
        clock.advance(60)
    [running] = queue.claim(1)
    queue.mark_running(running.id, runner="celery@runner-1")
    queue.push(boefje_task(org="org2", boefje="dns-records"), ranker.rank(RankingContext(clock(), manual=True)))
    queue.push(boefje_task(org="org3", boefje="crashes-its-runner"), clock())
    queue.claim(1, ["crashes-its-runner"], lease_seconds=1)
    clock.advance(2)
    assert len(queue.reap().dead_lettered) == 1
    Leadership.of_beat(real_redis, key_prefix, lease_seconds=60).hold()
    runners = RunnerPresence(real_redis, key_prefix)
    runners.seen("celery@runner-1", CELERY, active=1, processed=120)
    runners.seen("pull runner at 10.0.0.7", PULL)
    yield context


@pytest.fixture
def dashboard(seeded: AppContext) -> Iterator[str]:
    env = {"SCHEDULER_API_TOKEN": TOKEN, "SCHEDULER_LOGGING_FORMAT": "text"}
    with api_server(REDIS_URL, seeded.settings.key_prefix, env) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    profile = tempfile.mkdtemp(prefix="kat-dashboard-browser-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1100", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def figure(browser: Any, name: str) -> str:
    """A figure's text, read in one step: the page's refresh may replace the element between two steps."""
    text = browser.execute_script("const e = document.querySelector(`[data-figure='${arguments[0]}']`);"
                                  "return e === null ? null : e.textContent.trim();", name)
    assert text is not None, f"the page shows no figure {name}"
    return str(text)


def test_the_dashboard_in_a_browser_shows_the_queue_and_requeues_a_dead_letter(
        seeded: AppContext, dashboard: str, browser: Any, tmp_path: Path) -> None:
    queue = seeded.queues["boefje"]
    # Without the token: the API says 401, and the browser gets the sign-in form, not the figures.
    assert httpx.get(f"{dashboard}/dashboard/data").status_code == 401
    browser.get(f"{dashboard}/dashboard")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-figure]")
    token_field = browser.find_element(By.NAME, "token")
    token_field.send_keys("not-the-token")
    token_field.submit()
    wait_for(lambda: "That is not the token" in browser.page_source, what="the wrong token refused")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-figure]")

    token_field = browser.find_element(By.NAME, "token")
    token_field.send_keys(TOKEN)
    token_field.submit()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-figure]"), what="the dashboard after signing in")

    # The figures on the page are the queue's.
    queued = queue.size()
    assert figure(browser, "boefje/queued") == str(queued) and queued > 20
    assert figure(browser, "boefje/running") == "1"
    assert figure(browser, "boefje/dead_letters") == "1"
    for organisation, count in queue.counts().items():
        assert figure(browser, f"boefje/{organisation}/queued") == str(count)
    page = browser.page_source
    assert "manual run: ahead of all automatic work" in page and "first scan" in page and "rescan" not in page
    assert "celery@runner-1" in page and "pull runner at 10.0.0.7" in page
    screenshot = Path(os.environ.get("KAT_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1280, browser.execute_script("return document.documentElement.scrollHeight") + 120)
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    # Requeue the dead letter: the browser asks for a confirmation, then the task is queued again.
    [dead] = queue.dead_letters()
    browser.find_element(By.CSS_SELECTOR, f'button[data-action="requeue"][data-task="{dead.id}"]').click()
    wait_for(lambda: _alert(browser), what="the confirmation")
    dialog = browser.switch_to.alert
    assert "requeue" in dialog.text
    dialog.accept()
    wait_for(lambda: _status(queue, dead.id) is TaskStatus.QUEUED, what="the dead letter queued in Redis")
    assert queue.dead_count() == 0 and queue.size() == queued + 1
    wait_for(lambda: shown(browser) == ("0", str(queued + 1)),
             what="the page to show it")


def shown(browser: Any) -> tuple[str, str]:
    """The dead letters and the queued tasks the page shows for the boefje queue."""
    return figure(browser, "boefje/dead_letters"), figure(browser, "boefje/queued")


def _alert(browser: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = browser.switch_to.alert
        alert.text  # noqa: B018  (raises while no dialog is open)
        return alert
    except NoAlertPresentException:
        return None


def _status(queue: Any, task_id: str) -> TaskStatus | None:
    record = queue.records.get(task_id)
    return record.status if record else None
