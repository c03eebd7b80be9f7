"""Fixtures of the reliability suite, its report, and its running order.

* `reliability_report` (session): every scenario records its counts there; the report is printed
  at the end of the run and written to test-output/reliability-report.{json,md}. The fuzz test can
  add its numbers with `reliability_report.record_fuzz(cases, server_errors)`.
* `jobs` (session): Herald's job core driven from the test process (tests/reliability/harness.py).
* `tenants` (session): `tenants("prefix")` seeds a throwaway organization; removed at the end.
* Running order: tests marked `after_faults` run last, so the recovery of the fault run
  (~3 minutes: the visibility timeout) overlaps the other tests instead of adding to the total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.reliability.harness import Jobs, Tenant, remove_tenant, seed_tenant
from tests.reliability.report import ReliabilityReport
from tests.support.cloud import LocalCloud

REPORT = pytest.StashKey[ReliabilityReport]()
_CURRENT: list[ReliabilityReport] = []  # the session's report, for hooks that get no config


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_faults: runs at the end of the session (fault-run verdicts)")
    config.stash[REPORT] = ReliabilityReport()
    _CURRENT.append(config.stash[REPORT])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker("after_faults")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("after_faults")] + last


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
