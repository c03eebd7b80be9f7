"""Fixtures of the reliability suite, its report, and its running order.

* `reliability_report` (session): every scenario records its counts there; the report is printed
  at the end of the run and written to test-output/reliability-report.{json,md}. The fuzz test can
  add its numbers with `reliability_report.record_fuzz(cases, server_errors)`.
* `jobs` (session): Herald's job core driven from the test process (tests/reliability/harness.py).
* `tenants` (session): `tenants("prefix")` seeds a throwaway organization; removed at the end.
* Running order: tests marked `kickoff` run first among the reliability tests and start the long
  scenarios (the fault run, the redrive at scale); tests marked `verdict` run at the very end and
  judge them. The recoveries (~3 minutes: the visibility timeout) and the redrive then overlap the
  other tests (the API fuzzing above all) instead of adding to the total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Jobs, Tenant, remove_tenant, seed_tenant
from tests.reliability.report import ReliabilityReport
from tests.support.cloud import LocalCloud

HERE = Path(__file__).resolve().parent
REPORT = pytest.StashKey[ReliabilityReport]()
_CURRENT: list[ReliabilityReport] = []  # the session's report, for hooks that get no config


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kickoff: starts a long scenario; runs before the other reliability tests")
    config.addinivalue_line("markers", "verdict: judges a long scenario; runs at the end of the session")
    config.stash[REPORT] = ReliabilityReport()
    _CURRENT.append(config.stash[REPORT])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Kick-offs first among the reliability tests (after any other suite's tests), verdicts last."""
    kickoffs = [item for item in items if item.get_closest_marker("kickoff")]
    verdicts = [item for item in items if item.get_closest_marker("verdict")]
    if not kickoffs and not verdicts:
        return
    moved = {id(item) for item in kickoffs + verdicts}
    rest = [item for item in items if id(item) not in moved]
    first = next((i for i, item in enumerate(rest) if HERE in Path(str(item.path)).parents), len(rest))
    items[:] = rest[:first] + kickoffs + rest[first:] + verdicts


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The fuzz numbers are read from the fuzz test's file only if it ran in this session.
    if report.when == "call" and "test_fuzz_api.py" in report.nodeid and not report.skipped and _CURRENT:
        _CURRENT[-1].fuzz_ran = True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    report = config.stash.get(REPORT, None)
    if report is None or report.empty:
        return
    path = report.write()
    for line in report.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"  (written to {path} and {path.with_suffix('.md').name})")


@pytest.fixture(scope="session")
def reliability_report(pytestconfig: pytest.Config) -> ReliabilityReport:
    return pytestconfig.stash[REPORT]


@pytest.fixture(scope="session")
def jobs(local_cloud: LocalCloud) -> Jobs:
    return Jobs(local_cloud)


@pytest.fixture(scope="session")
def tenants(stack: dict[str, Any], local_cloud: LocalCloud) -> Iterator[Callable[[str], Tenant]]:
    made: list[Tenant] = []

    def make(prefix: str) -> Tenant:
        tenant = seed_tenant(stack, local_cloud, prefix)
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        remove_tenant(local_cloud, tenant)
