"""The benchmark harness (bench/): ratios and goals, the JSON's shape, failing loudly, call counting.

Fast and offline: nothing here reaches the local cloud (botocore's Stubber answers the calls).
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from bench import __main__ as bench_main
from bench import calls, cloud, harness
from bench.harness import (
    BenchFailure,
    CallCounter,
    DropMetricLines,
    Figure,
    check,
    goal_met,
    markdown_table,
    percentile,
    ratio_of,
    results_document,
    table,
    wait_until,
    write_results,
)


# --- ratios and goals --------------------------------------------------------------------------
def test_the_ratio_is_herald_over_the_baseline() -> None:
    assert ratio_of(80.0, 100.0) == pytest.approx(0.8)
    assert ratio_of(150.0, 100.0) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("value", "baseline"), [(None, 1.0), (1.0, None), (1.0, 0.0), (math.inf, 1.0), (1.0, math.nan), (-0.6, 1.4)]
)
def test_a_ratio_without_two_finite_figures_is_none(value: float | None, baseline: float | None) -> None:
    assert ratio_of(value, baseline) is None


@pytest.mark.parametrize(
    ("goal", "value", "ratio", "met"),
    [
        ("ratio >= 0.8", 80.0, 0.8, True),
        ("ratio >= 0.8", 79.0, 0.79, False),
        ("ratio <= 1.5", 1.0, 1.5, True),
        ("ratio <= 1.5", 1.0, 1.51, False),
        ("ratio <= 1.3", 1.0, None, False),  # no ratio: a goal is never met by default
        ("value <= 1010", 1000.0, None, True),
        ("value <= 1010", 1011.0, None, False),
        (None, 1.0, 9.0, None),
    ],
)
def test_goals_are_checked_on_the_ratio_or_the_value(
    goal: str | None, value: float, ratio: float | None, met: bool | None
) -> None:
    assert goal_met(goal, value, ratio) is met


def test_a_figure_computes_its_ratio_and_whether_its_goal_is_met() -> None:
    slow = Figure("throughput", 60.0, "jobs/s", 100.0, goal="ratio >= 0.8")
    fast = Figure("throughput", 90.0, "jobs/s", 100.0, goal="ratio >= 0.8")
    assert (slow.ratio, slow.met) == (pytest.approx(0.6), False)
    assert (fast.ratio, fast.met) == (pytest.approx(0.9), True)
    assert Figure("calls", 14.2, "calls", 5.2).met is None


@pytest.mark.parametrize("goal", ["ratio > ", "speed >= 1", ">= 0.8", "ratio ~ 1"])
def test_a_malformed_goal_is_refused_when_the_figure_is_made(goal: str) -> None:
    with pytest.raises(ValueError, match="a goal reads like"):
        Figure("x", 1.0, "ms", 1.0, goal=goal)


# --- the JSON ----------------------------------------------------------------------------------
def test_the_results_document_has_exactly_date_machine_and_figures() -> None:
    figures = [Figure("cold start", 150.0, "ms", 100.0, goal="ratio <= 1.5", note="not in the JSON")]
    doc = results_document(figures, date=datetime(2026, 11, 26, 12, 0, tzinfo=UTC), host="2 x test CPU")
    assert set(doc) == {"date", "machine", "figures"}
    assert doc["date"] == "2026-11-26T12:00:00Z"
    assert doc["machine"] == "2 x test CPU"
    assert doc["figures"] == [
        {
            "name": "cold start",
            "value": 150.0,
            "unit": "ms",
            "baseline": 100.0,
            "ratio": 1.5,
            "goal": "ratio <= 1.5",
            "met": True,
        }
    ]


def test_figures_are_rounded_and_non_finite_numbers_become_null() -> None:
    [figure] = results_document([Figure("x", 1 / 3, "s", math.inf)], host="h")["figures"]
    assert figure["value"] == 0.3333
    assert figure["baseline"] is None and figure["ratio"] is None and figure["met"] is None


def test_results_are_written_as_json_where_asked(tmp_path: Path) -> None:
    path = tmp_path / "results" / "latest.json"
    written = write_results([Figure("x", 2.0, "s", 1.0)], path, host="h")
    assert json.loads(path.read_text()) == written
    assert not list(path.parent.glob("*.tmp"))


def test_the_machine_line_names_cpus_and_python() -> None:
    line = harness.machine()
    assert "x " in line and "Python 3." in line
    assert line.startswith(f"{os.cpu_count()} x ")
    assert line.endswith(f"Python {platform.python_version()}")


def test_the_tables_show_ratio_goal_and_a_missed_goal_loudly() -> None:
    figures = [
        Figure("API latency p50", 26.0, "ms", 13.0, goal="ratio <= 1.3"),
        Figure("fan-out SQS calls", 1000.0, "calls", 1000.0, goal="value <= 1010"),
    ]
    text = table(figures)
    assert "2.00x" in text and "NO" in text and "yes" in text
    md = markdown_table(figures)
    assert md.splitlines()[0].startswith("| figure |")
    assert "| API latency p50 | 26.0 ms | 13.0 ms | 2.00x | ratio <= 1.3 | NO |" in md
    assert markdown_table([f.to_json() for f in figures]) == md


# --- failing loudly ----------------------------------------------------------------------------
def test_check_raises_a_bench_failure_with_the_message() -> None:
    check(True, "fine")
    with pytest.raises(BenchFailure, match="1998 of 2000 jobs completed"):
        check(False, "1998 of 2000 jobs completed")


def test_a_percentile_of_nothing_fails_instead_of_inventing_a_figure() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)
    with pytest.raises(BenchFailure):
        percentile([], 50)


def test_waiting_fails_loudly_at_the_deadline() -> None:
    waited = wait_until(lambda: True, timeout=1)
    assert waited >= 0
    assert waited < 0.1  # a condition true at once is not slept on
    with pytest.raises(BenchFailure, match="every job completed"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, what="every job completed")


def test_waiting_for_final_jobs_returns_the_last_read_or_names_the_stragglers(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import jobs

    reads: list[list[str]] = []
    found = {"a": {"status": "completed"}, "b": {"status": "dead"}}

    def records(org_id: str, job_ids: list[str], table: str = jobs.TABLE) -> dict[str, dict[str, Any]]:
        reads.append(list(job_ids))
        return found

    monkeypatch.setattr(jobs, "records", records)
    assert jobs.wait_final("org", ["a", "b"], 1, "the jobs") == found
    assert reads == [["a", "b"]]  # one read: the records it returns are the ones it polled
    with pytest.raises(BenchFailure, match=r"waiting for the jobs: .*1 missing; 1 not final, e\.g\. c \(missing\)"):
        jobs.wait_final("org", ["a", "b", "c"], 0, "the jobs")


@pytest.fixture
def offline_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """run_all without a cloud: the stack and token steps are replaced, results go to tmp_path."""
    monkeypatch.setattr(cloud, "ensure_stack", lambda: cloud.Stack(api_url="http://api", functions={}))
    monkeypatch.setattr(cloud, "sweep", lambda: None)
    monkeypatch.setattr(cloud, "bench_tokens", lambda stack: stack)
    monkeypatch.setattr(cloud, "drop_token", lambda token: None)
    results = tmp_path / "latest.json"
    monkeypatch.setattr(harness, "RESULTS", results)
    return results


def test_a_benchmark_that_did_not_finish_its_work_makes_the_run_fail(
    offline_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def incomplete(stack: Any) -> list[Figure]:
        raise BenchFailure("pipeline: 1998 of 2000 jobs completed")

    def fine(stack: Any) -> list[Figure]:
        return [Figure("cold start", 120.0, "ms", 100.0, goal="ratio <= 1.5")]

    code = bench_main.run_all(["pipeline", "coldstart"], {"pipeline": incomplete, "coldstart": fine})
    assert code == 1
    err = capsys.readouterr().err
    assert "BENCHMARK FAILURES" in err and "1998 of 2000 jobs completed" in err
    names = [f["name"] for f in json.loads(offline_stack.read_text())["figures"]]
    assert names == ["cold start"]  # the failed benchmark recorded no figure


def test_a_crash_or_an_empty_result_is_a_failure_too(offline_stack: Path) -> None:
    def crash(stack: Any) -> list[Figure]:
        raise RuntimeError("boom")

    assert bench_main.run_all(["calls"], {"calls": crash}) == 1
    assert bench_main.run_all(["calls"], {"calls": lambda stack: []}) == 1


def test_a_missed_goal_is_reported_but_is_not_a_failure(
    offline_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main.run_all(
        ["latency"], {"latency": lambda s: [Figure("p50", 30.0, "ms", 10.0, goal="ratio <= 1.3")]}
    )
    assert code == 0
    assert "goals missed" in capsys.readouterr().out
    assert json.loads(offline_stack.read_text())["figures"][0]["met"] is False


def test_the_stack_cannot_be_reached_means_nothing_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def down() -> cloud.Stack:
        raise BenchFailure("starting the local cloud failed")

    monkeypatch.setattr(cloud, "ensure_stack", down)
    assert bench_main.run_all(["calls"], {}) == 1
    assert "BENCHMARKS NOT RUN" in capsys.readouterr().err


def test_unknown_benchmark_names_are_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_main.main(["--only", "pipline"])
    assert exit_.value.code == 2


# --- output ------------------------------------------------------------------------------------
def test_metric_lines_are_dropped_from_stdout_and_the_rest_kept() -> None:
    sink = io.StringIO()
    out = DropMetricLines(sink)
    out.write('{"_aws":{"Timestamp":1},"JobsEnqueued":[1.0]}')
    out.write("\n[bench] kept\n")
    out.write('{"level":"WARNING","message":"kept too"}\n')
    assert sink.getvalue() == '[bench] kept\n{"level":"WARNING","message":"kept too"}\n'


# --- AWS call counting -------------------------------------------------------------------------
def _ddb() -> Any:
    return boto3.session.Session().client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        endpoint_url="http://127.0.0.1:9",
    )


def test_calls_are_counted_per_phase_with_dynamodb_capacity() -> None:
    ddb = _ddb()
    counter = CallCounter()
    counter.attach(ddb)
    with Stubber(ddb) as stub:
        stub.add_response("get_item", {"ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5}})
        stub.add_response("put_item", {"ConsumedCapacity": {"TableName": "t", "CapacityUnits": 2.0}})
        stub.add_response("put_item", {})
        key = {"pk": {"S": "a"}}
        ddb.get_item(TableName="t", Key=key)
        with counter.in_phase("worker"):
            ddb.put_item(TableName="t", Item=key)
        with counter.paused():
            ddb.put_item(TableName="t", Item=key)
    assert dict(counter.phases["default"].calls) == {"dynamodb.GetItem": 1}
    assert counter.phases["default"].read_units == 0.5
    assert dict(counter.phases["worker"].calls) == {"dynamodb.PutItem": 1}
    assert counter.phases["worker"].write_units == 2.0
    assert counter.total().total() == 2  # the paused call is not counted
    assert counter.total().by_service() == {"dynamodb": 2}


def test_the_counter_asks_dynamodb_for_its_consumed_capacity() -> None:
    ddb = _ddb()
    CallCounter().attach(ddb)
    with Stubber(ddb) as stub:
        stub.add_response(
            "get_item", {}, {"TableName": "t", "Key": {"pk": {"S": "a"}}, "ReturnConsumedCapacity": "TOTAL"}
        )
        ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})  # the Stubber checks the parameters


def test_a_counter_attached_to_a_session_counts_the_clients_made_from_it() -> None:
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    counter = CallCounter()
    counter.attach(session)
    sqs = session.client("sqs", endpoint_url="http://127.0.0.1:9")
    with Stubber(sqs) as stub:
        stub.add_response("list_queues", {})
        sqs.list_queues()
    assert dict(counter.total().calls) == {"sqs.ListQueues": 1}


# --- cost arithmetic ---------------------------------------------------------------------------
def test_cost_per_million_jobs_adds_up_the_list_prices() -> None:
    # API Gateway 3.50 + Lambda requests 1.1 x 0.20 + SQS 1.2 x 0.40 + 3 WRU x 0.625 + 2 RRU x 0.125
    expected = 3.50 + 0.22 + 0.48 + 1.875 + 0.25
    assert calls.cost_per_million(1.2, 3.0, 2.0) == pytest.approx(expected)
    # Lambda time, priced apart: 100 ms at 0.5 GB = 0.05 GB-s x 0.0000166667, x 1e6 jobs
    per_100_ms = 100 * calls.LAMBDA_USD_PER_MS_PER_MILLION
    assert per_100_ms == pytest.approx(0.8333, 1e-3)
