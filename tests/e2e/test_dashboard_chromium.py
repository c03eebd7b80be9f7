"""End to end: the real dashboard page and the real CLI against the fake API (tests/e2e/fake_api.py).

The dashboard is served at ``/prefix/admin`` so its "API base = page path minus /admin" logic is
exercised. Chromium is Debian's (/usr/bin/chromium) driven by Playwright's Python package; no
browser is downloaded. Screenshots go to $HERALD_TEST_OUTPUT (default: test-output/).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fake_api import ACME_ADMIN_TOKEN, JOBS_QUEUE, OPERATOR_TOKEN, FakeHerald

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def output_dir() -> Path:
    path = Path(os.environ.get("HERALD_TEST_OUTPUT") or REPO / "test-output")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def fake() -> Iterator[FakeHerald]:
    with FakeHerald(dead_letters=1).running() as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright package is not installed (pip install playwright)",
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # Chromium logs every 4xx as "Failed to load resource"; the tests cause 401s and 404s
    # on purpose, so only script errors count.
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, problems


def sign_in(page: Any, fake: FakeHerald, token: str = OPERATOR_TOKEN) -> None:
    from playwright.sync_api import expect

    page.goto(f"{fake.base_url}/admin")
    expect(page.get_by_test_id("login")).to_be_visible()
    page.get_by_label("API token").fill(token)
    page.get_by_test_id("login-submit").click()


def test_dashboard_shows_dead_letter_and_redrives_it(page: Any, fake: FakeHerald) -> None:
    from playwright.sync_api import expect

    # GIVEN the fake API with one dead letter, WHEN an operator signs in
    sign_in(page, fake)

    # THEN the queues, the dead letter with its error, and the recent failures show
    queue = page.locator(f'[data-testid="queue-row"][data-queue="{JOBS_QUEUE}"]')
    expect(page.get_by_test_id("queue-row")).to_have_count(2)
    expect(queue.locator('[data-col="dlq_depth"]')).to_have_text("1")
    expect(queue.locator('[data-col="oldest"]')).to_have_text("42s")
    letter = page.get_by_test_id("dead-letter-row")
    expect(letter).to_have_count(1)
    expect(letter).to_have_attribute("data-job-id", "job-dead-0001")
    expect(letter).to_contain_text("webhook_http_410")
    # API strings are text, never markup: the "<b>" in the message shows literally
    expect(letter).to_contain_text("answered 410 <b>Gone</b>")
    assert page.locator('[data-testid="dead-letters"] b').count() == 0
    expect(page.get_by_test_id("last-refreshed")).not_to_have_text("never")
    # the operator token spans every organization: jobs need one named
    expect(page.get_by_test_id("failures-hint")).to_contain_text("name one in the Organization field")
    page.get_by_label("Organization", exact=True).fill("acme")
    page.get_by_test_id("org-apply").click()
    expect(page.get_by_test_id("failure-row")).to_have_count(1)
    expect(page.get_by_test_id("failure-row")).to_contain_text("webhook_http_410")
    expect(page.get_by_test_id("failures-hint")).to_be_hidden()

    # the token is in session storage only, and every call went under the page's base path
    assert OPERATOR_TOKEN not in page.url
    assert page.evaluate("sessionStorage.getItem('herald.token')") == OPERATOR_TOKEN
    assert fake.requests and all(path.startswith("/prefix/") for _, path in fake.requests)
    assert not any(OPERATOR_TOKEN in path for _, path in fake.requests)
    page.screenshot(path=str(output_dir() / "dashboard.png"), full_page=True)

    # WHEN the operator presses Redrive
    page.get_by_test_id(f"redrive-{JOBS_QUEUE}").click()

    # THEN the progress reaches completed and the dead letter is gone
    progress = page.get_by_test_id("redrive-progress")
    expect(progress).to_have_attribute("data-status", "completed")
    expect(progress).to_contain_text("1 / 1 moved (100%)")
    expect(progress.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "1")
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(0)
    expect(page.get_by_test_id("dead-letters-empty")).to_be_visible()
    expect(queue.locator('[data-col="dlq_depth"]')).to_have_text("0")
    expect(page.get_by_test_id(f"redrive-{JOBS_QUEUE}")).to_be_disabled()
    assert ("POST", f"/prefix/v1/admin/queues/{JOBS_QUEUE}/redrive") in fake.requests
    page.screenshot(path=str(output_dir() / "dashboard-redriven.png"), full_page=True)


def test_dashboard_job_search_pause_and_logout(page: Any, fake: FakeHerald) -> None:
    from playwright.sync_api import expect

    sign_in(page, fake)
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(1)

    # clicking a job id looks the job up and shows its record as JSON
    page.get_by_test_id("dead-letter-row").get_by_role("button", name="Show job job-dead-0001").click()
    expect(page.get_by_test_id("job-result")).to_contain_text('"job_id": "job-dead-0001"')
    expect(page.get_by_test_id("job-result")).to_contain_text('"status": "dead"')
    assert ("GET", "/prefix/v1/jobs/job-dead-0001?org_id=acme") in fake.requests

    # the operator must name an organization to look a job up by hand
    page.get_by_label("Job id").fill("nope")
    page.get_by_test_id("job-search-submit").click()
    expect(page.get_by_test_id("job-search-status")).to_contain_text("This token spans every organization")
    expect(page.get_by_test_id("job-result")).to_be_hidden()

    # an unknown id shows the API's message
    page.get_by_label("Organization", exact=True).fill("globex")
    page.get_by_test_id("org-apply").click()
    page.get_by_test_id("job-search-submit").click()
    expect(page.get_by_test_id("job-search-status")).to_have_text("No job nope in globex: No job nope. (not_found)")

    # pause toggles auto-refresh
    pause = page.get_by_test_id("pause-toggle")
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#refresh-mode")).to_have_text("Auto-refresh paused")
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "false")

    # logout forgets the token and the data
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login")).to_be_visible()
    expect(page.get_by_test_id("app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('herald.token')") is None
    assert page.get_by_test_id("dead-letter-row").count() == 0


def test_dashboard_rejected_token_asks_again(page: Any, fake: FakeHerald) -> None:
    from playwright.sync_api import expect

    sign_in(page, fake, token="not-a-token")

    expect(page.get_by_test_id("login")).to_be_visible()
    expect(page.get_by_test_id("login-message")).to_contain_text("Missing or unknown bearer token.")
    assert page.evaluate("sessionStorage.getItem('herald.token')") is None

    # an admin token acts on its own organization: no organization to name
    page.get_by_label("API token").fill(ACME_ADMIN_TOKEN)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(1)
    expect(page.get_by_test_id("failure-row")).to_have_count(1)


# --------------------------------------------------------------------------- the CLI


def run_cli(*args: str, stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "herald_cli", *args],
        check=False,
        cwd="/",  # no .herald/stack.json above it
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=60,
    )


def test_cli_dlq_redrive_shows_progress_and_exits_0() -> None:
    with FakeHerald(dead_letters=5).running() as fake:
        connection = ["--api-url", fake.base_url, "--token", OPERATOR_TOKEN]
        peek = run_cli(*connection, "dlq", "peek", JOBS_QUEUE)
        assert peek.returncode == 0, peek.stderr
        assert "job-dead-0005" in peek.stdout and "provider_timeout" in peek.stdout

        result = run_cli(*connection, "dlq", "redrive", JOBS_QUEUE, "--poll-interval", "0.05")

        assert result.returncode == 0, result.stderr
        assert "0/5   0%" in result.stderr  # the first plain progress line (stderr is no TTY)
        assert "[##############################] 5/5 100%" in result.stderr
        assert "\r" not in result.stderr
        assert "Redrive rd-0001 completed: moved 5 of 5 dead letters back to" in result.stdout
        assert fake.dlq[JOBS_QUEUE] == []

        status = run_cli(*connection, "status")
        assert status.returncode == 0, status.stderr
        assert JOBS_QUEUE in status.stdout and "Health  ok" in status.stdout

        jobs = run_cli(*connection, "jobs", "list", "--org", "acme")
        assert jobs.returncode == 0, jobs.stderr
        assert "job-dead-0001" in jobs.stdout and "queued" in jobs.stdout  # redriven

        no_org = run_cli(*connection, "jobs", "list")
        assert no_org.returncode == 1
        assert "(org_required)" in no_org.stderr and "--org ORG" in no_org.stderr


def test_cli_dlq_redrive_draws_a_bar_on_a_tty() -> None:
    with FakeHerald(dead_letters=3).running() as fake:
        leader, follower = pty.openpty()
        try:
            result = run_cli(
                "--api-url",
                fake.base_url,
                "--token",
                OPERATOR_TOKEN,
                "dlq",
                "redrive",
                JOBS_QUEUE,
                "--poll-interval",
                "0.05",
                stderr=follower,
            )
            os.close(follower)
            follower = -1
            drawn = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and select.select([leader], [], [], 0.2)[0]:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                drawn += chunk
        finally:
            if follower >= 0:
                os.close(follower)
            os.close(leader)

    assert result.returncode == 0
    text = drawn.decode()
    assert "\r[" in text and "3/3 100%" in text and "completed" in text


def test_cli_unknown_token_exits_4() -> None:
    with FakeHerald().running() as fake:
        result = run_cli("--api-url", fake.base_url, "--token", "wrong", "jobs", "list")
    assert result.returncode == 4
    assert "error: Missing or unknown bearer token. (unauthorized)" in result.stderr


def test_cli_unreachable_api_exits_3() -> None:
    with FakeHerald().running() as fake:
        url = fake.base_url
    result = run_cli("--api-url", url, "--token", OPERATOR_TOKEN, "status")
    assert result.returncode == 3
    assert "error: cannot reach the API at" in result.stderr
