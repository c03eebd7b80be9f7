"""SendMessageBatch fan-out: call counts, partial failures, size limits, nothing dropped.

The 10,000-entry test runs against ``FakeSQS`` (moto's SQS slows down quadratically with queue
depth: 1,000 messages take ~40 s); the same code path runs against moto on a small scale, with
calls counted and a partial failure injected through botocore's event system.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.digests.fanout import (
    MAX_BATCH_BYTES,
    FanoutReport,
    SQSBatchClient,
    chunk_for_invocations,
    entry_size,
    send_in_batches,
)

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-digests"


class FakeSQS:
    """SendMessageBatch as SQS answers it, with failures scripted per entry Id.

    ``fail[id]`` is a list of (code, sender_fault) consumed one per attempt; the call itself is
    refused like SQS does (too many entries, ids not distinct, batch too long).
    """

    def __init__(self, fail: dict[str, list[tuple[str, bool]]] | None = None, raise_times: int = 0) -> None:
        self.fail = fail or {}
        self.raise_times = raise_times
        self.calls: list[list[dict[str, Any]]] = []
        self.delivered: list[str] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        assert QueueUrl == QUEUE_URL
        self.calls.append(Entries)
        if not 1 <= len(Entries) <= 10:
            raise AssertionError("TooManyEntriesInBatchRequest")
        if len({e["Id"] for e in Entries}) != len(Entries):
            raise AssertionError("BatchEntryIdsNotDistinct")
        if len(Entries) > 1 and sum(entry_size(e) for e in Entries) > MAX_BATCH_BYTES:
            raise AssertionError("BatchRequestTooLong")
        if self.raise_times:
            self.raise_times -= 1
            raise ConnectionError("endpoint unreachable")
        successful, failed = [], []
        for entry in Entries:
            script = self.fail.get(entry["Id"])
            if script:
                code, sender_fault = script.pop(0)
                failed.append({"Id": entry["Id"], "Code": code, "Message": code, "SenderFault": sender_fault})
            else:
                self.delivered.append(entry["Id"])
                successful.append({"Id": entry["Id"], "MessageId": f"m-{entry['Id']}"})
        return {"Successful": successful, "Failed": failed}


def entries(count: int, body: str = "{}") -> Iterator[dict[str, Any]]:
    for i in range(count):
        yield {"Id": f"r{i}", "MessageBody": body}


def no_sleep(_: float) -> None:
    pass


def test_fake_client_satisfies_the_client_protocol() -> None:
    client: SQSBatchClient = FakeSQS()
    assert client.send_message_batch(QueueUrl=QUEUE_URL, Entries=[{"Id": "a", "MessageBody": "x"}])


def test_10000_entries_take_exactly_1000_calls() -> None:
    # GIVEN 10,000 recipients, WHEN fanned out, THEN 1,000 SendMessageBatch calls of 10 each.
    sqs = FakeSQS()
    report = send_in_batches(sqs, QUEUE_URL, entries(10_000), sleep=no_sleep)
    assert report == FanoutReport(sent=10_000, failed=[], calls=1000)
    assert len(sqs.calls) == 1000
    assert all(len(call) == 10 for call in sqs.calls)
    assert len(set(sqs.delivered)) == 10_000


def test_partial_batch_failure_retries_only_the_failed_entries() -> None:
    sqs = FakeSQS(fail={"r3": [("InternalError", False)], "r7": [("ServiceUnavailable", False)] * 2})
    sleeps: list[float] = []
    report = send_in_batches(sqs, QUEUE_URL, entries(20), sleep=sleeps.append)
    assert report.ok and report.sent == 20
    # first batch: 1 call + retry of r3 and r7 + retry of r7 alone; second batch: 1 call
    assert [[e["Id"] for e in call] for call in sqs.calls[1:3]] == [["r3", "r7"], ["r7"]]
    assert report.calls == len(sqs.calls) == 4
    assert sorted(sqs.delivered) == sorted(f"r{i}" for i in range(20))  # each exactly once
    assert len(sleeps) == 2 and all(0 <= s <= 0.1 for s in sleeps)


def test_entries_still_failing_after_max_attempts_are_reported() -> None:
    sqs = FakeSQS(fail={"r1": [("InternalError", False)] * 10})
    report = send_in_batches(sqs, QUEUE_URL, entries(5), max_attempts=3, sleep=no_sleep)
    assert report.sent == 4
    assert [(f.id, f.code) for f in report.failed] == [("r1", "InternalError")]
    assert report.calls == 3


def test_sender_fault_is_reported_without_retry() -> None:
    sqs = FakeSQS(fail={"r2": [("InvalidMessageContents", True)]})
    report = send_in_batches(sqs, QUEUE_URL, entries(5), sleep=no_sleep)
    assert report.sent == 4 and report.calls == 1
    assert [(f.id, f.code, f.sender_fault) for f in report.failed] == [("r2", "InvalidMessageContents", True)]


def test_a_call_that_raises_is_retried_then_reported() -> None:
    flaky = FakeSQS(raise_times=1)
    assert send_in_batches(flaky, QUEUE_URL, entries(10), sleep=no_sleep) == FanoutReport(10, [], 2)

    down = FakeSQS(raise_times=99)
    report = send_in_batches(down, QUEUE_URL, entries(12), max_attempts=2, sleep=no_sleep)
    assert report.sent == 0 and report.calls == 4
    assert {f.id for f in report.failed} == {f"r{i}" for i in range(12)}
    assert {f.code for f in report.failed} == {"ConnectionError"}


def test_batches_respect_the_total_size_limit() -> None:
    # GIVEN 100 KiB bodies, THEN at most two fit a 256 KiB batch.
    sqs = FakeSQS()
    report = send_in_batches(sqs, QUEUE_URL, entries(5, body="x" * 100 * 1024), sleep=no_sleep)
    assert report.sent == 5
    assert [len(call) for call in sqs.calls] == [2, 2, 1]


def test_an_oversized_entry_goes_alone_and_sqs_decides() -> None:
    big = {"Id": "big", "MessageBody": "x" * (MAX_BATCH_BYTES + 1)}
    sqs = FakeSQS(fail={"big": [("MessageTooLong", True)]})
    report = send_in_batches(sqs, QUEUE_URL, [*entries(3), big], sleep=no_sleep)
    assert [len(call) for call in sqs.calls] == [3, 1]
    assert [(f.id, f.code) for f in report.failed] == [("big", "MessageTooLong")]


def test_attributes_count_towards_the_size() -> None:
    entry = {
        "Id": "a",
        "MessageBody": "abc",
        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "daily"}},
    }
    assert entry_size(entry) == 3 + len("kind") + len("String") + len("daily")


def test_duplicate_and_invalid_entries_are_reported_not_sent() -> None:
    sqs = FakeSQS()
    batch = [{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}, {"MessageBody": "3"}]
    report = send_in_batches(sqs, QUEUE_URL, batch, sleep=no_sleep)
    assert report.sent == 1
    assert [(f.id, f.code) for f in report.failed] == [("a", "DuplicateId"), ("", "InvalidEntry")]
    assert sqs.delivered == ["a"]


def test_entries_missing_from_the_response_are_never_assumed_sent() -> None:
    class Forgetful(FakeSQS):
        def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Mapping[str, Any]:
            response = dict(super().send_message_batch(QueueUrl=QueueUrl, Entries=Entries))
            response["Successful"] = response["Successful"][1:] if len(self.calls) == 1 else response["Successful"]
            return response

    report = send_in_batches(Forgetful(), QUEUE_URL, entries(3), sleep=no_sleep)
    assert report.sent == 3 and report.calls == 2


def test_progress_is_reported_after_each_batch() -> None:
    seen: list[int] = []
    send_in_batches(FakeSQS(), QUEUE_URL, entries(25), on_progress=lambda r: seen.append(r.sent), sleep=no_sleep)
    assert seen == [10, 20, 25]


def test_chunk_for_invocations() -> None:
    assert list(chunk_for_invocations(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunk_for_invocations([], 3)) == []
    with pytest.raises(ValueError):
        list(chunk_for_invocations(range(3), 0))


@pytest.fixture
def moto_sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="herald-digests")["QueueUrl"]
        yield client, url


def drain(client: Any, url: str) -> list[str]:
    bodies: list[str] = []
    while messages := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in messages]
        client.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return bodies


def test_moto_batches_and_call_count(moto_sqs: tuple[Any, str]) -> None:
    client, url = moto_sqs
    calls: list[str] = []
    sizes: list[int] = []
    client.meta.events.register("before-call.sqs.*", lambda model, **_: calls.append(model.name))
    client.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **_: sizes.append(len(params["Entries"]))
    )
    payload = ({"Id": f"u{i}", "MessageBody": json.dumps({"user_id": f"u{i}"})} for i in range(25))
    report = send_in_batches(client, url, payload, sleep=no_sleep)
    assert report == FanoutReport(sent=25, failed=[], calls=3)
    assert calls == ["SendMessageBatch"] * 3
    assert sizes == [10, 10, 5]
    assert sorted(json.loads(b)["user_id"] for b in drain(client, url)) == sorted(f"u{i}" for i in range(25))


def test_moto_partial_failure_is_retried_and_delivered_once(moto_sqs: tuple[Any, str]) -> None:
    # GIVEN SQS fails entry u4 of the first call (the entry is withheld from moto and reported
    # in Failed, exactly as a real partial failure looks to the caller),
    client, url = moto_sqs
    calls: list[list[str]] = []
    state = {"injected": False}

    def withhold(params: dict[str, Any], **_: Any) -> None:
        ids = [e["Id"] for e in params["Entries"]]
        calls.append(ids)
        if not state["injected"] and "u4" in ids:
            params["Entries"] = [e for e in params["Entries"] if e["Id"] != "u4"]

    def report_failed(parsed: dict[str, Any], **_: Any) -> None:
        if not state["injected"] and "u4" in calls[-1]:
            state["injected"] = True
            parsed.setdefault("Failed", []).append(
                {"Id": "u4", "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            )

    client.meta.events.register("provide-client-params.sqs.SendMessageBatch", withhold)
    client.meta.events.register("after-call.sqs.SendMessageBatch", report_failed)
    # WHEN 12 entries are fanned out,
    payload = ({"Id": f"u{i}", "MessageBody": f"u{i}"} for i in range(12))
    report = send_in_batches(client, url, payload, sleep=no_sleep)
    # THEN u4 alone is sent again, and the queue holds every message exactly once.
    assert report == FanoutReport(sent=12, failed=[], calls=3)
    assert calls[1] == ["u4"]
    assert sorted(drain(client, url)) == sorted(f"u{i}" for i in range(12))
