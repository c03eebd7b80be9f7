"""Fan a digest run out to SQS: one message per recipient, ten per SendMessageBatch call.

Batching is the difference between 10,000 API calls and 1,000 for a large organization. A batch
call can succeed while some of its entries fail (``Failed`` in the response), so only those
entries are sent again, with a short backoff, and whatever still fails is returned in the
report: the caller decides (fail the fan-out job so SQS retries it; the per-period idempotency
record keeps recipients already served from getting a second email). Nothing is dropped silently.

FIFO queues: an entry retried after a later entry of its group succeeded is delivered after it.
Digest messages are independent, so ordering is not preserved across retries on purpose.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol, TypeVar

MAX_BATCH_ENTRIES = 10
# SendMessageBatch limit on the sum of the entries' sizes (body + attributes). SQS has since
# raised it to 1 MiB, but 256 KiB is what every region and LocalStack accept.
MAX_BATCH_BYTES = 256 * 1024
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_SECONDS = 0.05

T = TypeVar("T")


class SQSBatchClient(Protocol):
    """The one method of a boto3 SQS client used here (boto3 clients satisfy it structurally)."""

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class FailedEntry:
    id: str
    code: str
    message: str = ""
    sender_fault: bool = False


@dataclass
class FanoutReport:
    """What happened to every entry: ``sent + len(failed)`` equals the number of entries given."""

    sent: int = 0
    failed: list[FailedEntry] = field(default_factory=list)
    calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def send_in_batches(
    sqs_client: SQSBatchClient,
    queue_url: str,
    entries: Iterable[Mapping[str, Any]],
    *,
    on_progress: Callable[[FanoutReport], None] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
    max_batch_bytes: int = MAX_BATCH_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> FanoutReport:
    """Send every entry (``Id``, ``MessageBody`` and optional ``DelaySeconds``,
    ``MessageAttributes``, ``MessageGroupId``, ...) in batches of at most ten entries and
    ``max_batch_bytes`` bytes.

    An entry failing with ``SenderFault`` (the request itself is wrong) is reported at once;
    other failures, and a call that raises (after botocore's own retries), are retried for that
    batch's failed entries only, up to ``max_attempts`` sends in all. An entry larger than
    ``max_batch_bytes`` is sent alone and SQS decides. An ``Id`` seen before in this run is
    reported as ``DuplicateId`` without sending, because the report is keyed by ``Id``.
    ``on_progress`` gets the live report after each batch (e.g. to log or watch the time left).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    report = FanoutReport()
    seen: set[str] = set()

    def checked(stream: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for entry in stream:
            entry_id = str(entry.get("Id", ""))
            if not entry_id or "MessageBody" not in entry:
                report.failed.append(FailedEntry(entry_id, "InvalidEntry", "Id and MessageBody are required", True))
            elif entry_id in seen:
                report.failed.append(FailedEntry(entry_id, "DuplicateId", "Id already used in this run", True))
            else:
                seen.add(entry_id)
                yield entry

    for batch in _batches(checked(entries), max_batch_bytes):
        _send_batch(sqs_client, queue_url, batch, report, max_attempts, backoff_seconds, sleep)
        if on_progress is not None:
            on_progress(report)
    return report


def chunk_for_invocations(items: Iterable[T], per_invocation: int) -> Iterator[list[T]]:
    """Split work into chunks of at most ``per_invocation`` items, one per Lambda invocation,
    when one invocation cannot send everything within its timeout."""
    if per_invocation < 1:
        raise ValueError("per_invocation must be at least 1")
    iterator = iter(items)
    while chunk := list(islice(iterator, per_invocation)):
        yield chunk


def entry_size(entry: Mapping[str, Any]) -> int:
    """Bytes SQS counts for an entry: the body plus each attribute's name, type and value."""
    size = len(str(entry.get("MessageBody", "")).encode())
    for key in ("MessageAttributes", "MessageSystemAttributes"):
        attributes = entry.get(key) or {}
        for name, value in attributes.items():
            size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
            if "StringValue" in value:
                size += len(str(value["StringValue"]).encode())
            if "BinaryValue" in value:
                binary = value["BinaryValue"]
                size += len(binary) if isinstance(binary, bytes | bytearray) else len(str(binary).encode())
    return size


def _batches(entries: Iterable[Mapping[str, Any]], max_bytes: int) -> Iterator[list[Mapping[str, Any]]]:
    batch: list[Mapping[str, Any]] = []
    batch_bytes = 0
    for entry in entries:
        size = entry_size(entry)
        if batch and (len(batch) == MAX_BATCH_ENTRIES or batch_bytes + size > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(entry)
        batch_bytes += size
    if batch:
        yield batch


def _send_batch(
    client: SQSBatchClient,
    queue_url: str,
    batch: Sequence[Mapping[str, Any]],
    report: FanoutReport,
    max_attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None],
) -> None:
    pending = list(batch)
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            # Exponential backoff with full jitter: throttled shards recover, and concurrent
            # fan-outs do not retry in lockstep.
            sleep(random.uniform(0, backoff_seconds * 2 ** (attempt - 2)))
        report.calls += 1
        try:
            response = client.send_message_batch(QueueUrl=queue_url, Entries=[dict(e) for e in pending])
        except Exception as exc:  # any call failure becomes reported entry failures, never lost
            failures = {str(e["Id"]): FailedEntry(str(e["Id"]), _error_code(exc), str(exc)) for e in pending}
        else:
            failures = {
                str(f["Id"]): FailedEntry(
                    str(f["Id"]),
                    str(f.get("Code", "Unknown")),
                    str(f.get("Message", "")),
                    bool(f.get("SenderFault", False)),
                )
                for f in response.get("Failed") or []
            }
            succeeded = {str(s["Id"]) for s in response.get("Successful") or []}
            for entry in pending:
                entry_id = str(entry["Id"])
                if entry_id in succeeded and entry_id not in failures:
                    report.sent += 1
                elif entry_id not in failures:  # neither: never assume it was sent
                    failures[entry_id] = FailedEntry(entry_id, "MissingFromResponse")
        for failure in failures.values():
            if failure.sender_fault or attempt == max_attempts:
                report.failed.append(failure)
        pending = [e for e in pending if str(e["Id"]) in failures and not failures[str(e["Id"])].sender_fault]
        if not pending:
            return


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
