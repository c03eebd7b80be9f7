"""Conformance tests for Herald's LocalStack process executor (localstack/process_executor).

They check that a Lambda function run as a local process behaves as on AWS where Herald relies
on it: results and error documents, timeouts, exits, logs, environment, concurrency, warm reuse
and SQS partial-batch failures with a DLQ.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ECHO = """
import os
COLD = {"invocations": 0}

def handler(event, context):
    COLD["invocations"] += 1
    return {"event": event, "pid": os.getpid(), "invocations": COLD["invocations"]}
"""


def test_success_returns_the_handler_result(make_function, invoke):
    name = make_function(ECHO)
    result = invoke(name, {"hello": "world", "n": [1, 2]})
    assert result.error is None
    assert result.payload["event"] == {"hello": "world", "n": [1, 2]}


def test_nested_handler_path_resolves_as_on_aws(make_function, invoke):
    name = make_function(
        files={
            "pkg/__init__.py": "",
            "pkg/sub.py": "def run(event, context):\n    return 'nested'\n",
        },
        handler="pkg.sub.run",
    )
    assert invoke(name).payload == "nested"


def test_handler_exception_is_an_aws_error_document(make_function, invoke):
    name = make_function("""
        def handler(event, context):
            raise ValueError("boom")
    """)
    result = invoke(name)
    assert result.error == "Unhandled"
    assert result.payload["errorType"] == "ValueError"
    assert result.payload["errorMessage"] == "boom"
    trace = result.payload["stackTrace"]
    assert any('raise ValueError("boom")' in frame and "app.py" in frame for frame in trace), trace
    assert not any("bootstrap.py" in frame for frame in trace), trace
    assert "[ERROR] ValueError: boom" in result.logs


def test_import_and_handler_errors_use_runtime_error_types(make_function, invoke):
    missing_module = make_function("def handler(e, c):\n    return 1\n", handler="nope.handler")
    result = invoke(missing_module)
    assert result.error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'nope'" in result.payload["errorMessage"]

    missing_function = make_function("def handler(e, c):\n    return 1\n", handler="app.other")
    result = invoke(missing_function)
    assert result.payload["errorType"] == "Runtime.HandlerNotFound"
    assert result.payload["errorMessage"] == "Handler 'other' missing on module 'app'"


def test_timeout_kills_the_process_group_and_next_invoke_is_cold(make_function, invoke, wait_until):
    name = make_function(
        """
        import os, subprocess, time
        def handler(event, context):
            if event.get("hang"):
                child = subprocess.Popen(["sleep", "60"])
                print(f"child={child.pid}", flush=True)
                time.sleep(60)
            return os.getpid()
        """,
        timeout=1,
    )
    first_pid = invoke(name).payload
    started = time.monotonic()
    result = invoke(name, {"hang": True})
    elapsed = time.monotonic() - started
    assert result.error == "Unhandled"
    assert "Task timed out after 1.00 seconds" in result.payload["errorMessage"]
    assert "Task timed out after 1.00 seconds" in result.logs
    assert 1 <= elapsed < 5, elapsed
    child = int(re.search(r"child=(\d+)", result.logs).group(1))
    wait_until(lambda: not _alive(child), 5, f"the handler's child {child} to be killed")
    assert not _alive(first_pid)
    assert invoke(name).payload != first_pid  # a fresh runtime process


def test_sys_exit_is_a_runtime_exit_error(make_function, invoke):
    name = make_function("""
        import sys
        def handler(event, context):
            if event.get("exit"):
                print("leaving")
                sys.exit(3)
            return "alive"
    """)
    result = invoke(name, {"exit": True})
    assert result.error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in result.payload["errorMessage"]
    assert "leaving" in result.logs
    assert invoke(name).payload == "alive"  # the environment recovers


def test_log_tail_holds_printed_and_logged_lines(make_function, invoke):
    name = make_function("""
        import logging, sys
        print("init line")
        def handler(event, context):
            print("to stdout", event["n"])
            print("to stderr", file=sys.stderr)
            logging.getLogger().warning("a warning")
            return None
    """)
    first = invoke(name, {"n": 1})
    assert first.error is None
    for expected in ("init line", "to stdout 1", "to stderr", "a warning", "START RequestId"):
        assert expected in first.logs, first.logs
    second = invoke(name, {"n": 2})
    assert "to stdout 2" in second.logs
    assert "to stdout 1" not in second.logs and "init line" not in second.logs


def test_environment_and_context_match_aws(make_function, invoke, local_cloud):
    name = make_function(
        """
        import os, sys, boto3
        def handler(event, context):
            return {
                "env": dict(os.environ),
                "sys_path0": sys.path[0],
                "cwd": os.getcwd(),
                "context": {
                    "aws_request_id": context.aws_request_id,
                    "function_name": context.function_name,
                    "invoked_function_arn": context.invoked_function_arn,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "log_group_name": context.log_group_name,
                    "remaining": context.get_remaining_time_in_millis(),
                },
                # boto3 inside the function must reach the local cloud with its credentials
                "account": boto3.client("sts").get_caller_identity()["Account"],
            }
        """,
        timeout=7,
        memory=256,
        env={"HERALD_FLAG": "on", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000"},
    )
    result = invoke(name)
    assert result.error is None, result.payload
    env, ctx = result.payload["env"], result.payload["context"]
    assert env["HERALD_FLAG"] == "on"
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:8000"
    assert env["AWS_ENDPOINT_URL"] == local_cloud.endpoint
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "7"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert env["LAMBDA_TASK_ROOT"] == result.payload["sys_path0"] == result.payload["cwd"]
    assert "_X_AMZN_TRACE_ID" in env
    assert not any(k.startswith(("GATEWAY_", "HERALD_LAMBDA", "LAMBDA_RUNTIME_EXEC")) for k in env)
    assert ctx["function_name"] == name
    assert ctx["invoked_function_arn"].endswith(f":function:{name}")
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert 0 < ctx["remaining"] <= 7000
    assert result.payload["account"] == "000000000000"


def test_runtime_without_matching_interpreter_fails_the_version(make_function, lambda_client):
    # Herald configures python3.11 only: python3.12 has no interpreter (or a wrong one), and the
    # version must fail at deploy with a reason, not at its first invoke.
    name = make_function(ECHO, runtime="python3.12", expect_state="Failed")
    reason = lambda_client.get_function_configuration(FunctionName=name)["StateReason"]
    assert "python3.12" in reason, reason


def test_warm_invokes_reuse_the_process(make_function, invoke):
    name = make_function(ECHO)
    first, second = invoke(name), invoke(name)
    assert first.payload["pid"] == second.payload["pid"]
    assert (first.payload["invocations"], second.payload["invocations"]) == (1, 2)


def test_eight_concurrent_invokes_run_in_parallel_environments(make_function, invoke):
    name = make_function("""
        import os, time
        def handler(event, context):
            time.sleep(1)
            return {"i": event["i"], "pid": os.getpid()}
    """)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: invoke(name, {"i": i}), range(8)))
    elapsed = time.monotonic() - started
    assert [r.error for r in results] == [None] * 8
    assert sorted(r.payload["i"] for r in results) == list(range(8))
    assert len({r.payload["pid"] for r in results}) > 1
    assert elapsed < 6, elapsed  # 8 s if run one after another


def test_sqs_partial_batch_failure_retries_only_the_failed_message_then_dlq(
    make_function, make_queue, lambda_client, local_cloud, cleanup, wait_until
):
    sqs = local_cloud.client("sqs")
    audit_url, _ = make_queue()
    dlq_url, dlq_arn = make_queue()
    queue_url, queue_arn = make_queue(
        {
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        }
    )
    name = make_function(
        """
        import json, os, boto3
        sqs = boto3.client("sqs")
        def handler(event, context):
            failures = []
            for record in event["Records"]:
                sqs.send_message(QueueUrl=os.environ["AUDIT_URL"], MessageBody=record["body"])
                if record["body"] == "fail":
                    failures.append({"itemIdentifier": record["messageId"]})
            return {"batchItemFailures": failures}
        """,
        timeout=1,
        env={"AUDIT_URL": audit_url},
    )
    mapping = lambda_client.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=name,
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    cleanup(lambda_client.delete_event_source_mapping, UUID=mapping["UUID"])
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": body, "MessageBody": body} for body in ("ok-1", "fail", "ok-2")],
    )

    seen: list[str] = []

    def drain_audit() -> None:
        while messages := sqs.receive_message(QueueUrl=audit_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                seen.append(message["Body"])
                sqs.delete_message(QueueUrl=audit_url, ReceiptHandle=message["ReceiptHandle"])

    def failed_message_in_dlq() -> list[dict[str, Any]]:
        drain_audit()
        return sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=0).get("Messages", [])

    dead = wait_until(failed_message_in_dlq, 30, "the failed message to reach the DLQ", 0.2)
    assert [m["Body"] for m in dead] == ["fail"]
    # The DLQ move comes a visibility timeout after the 2nd receive: a redelivery of a good
    # message (1 visibility timeout) would have been processed and audited by then.
    drain_audit()
    assert sorted(seen) == ["fail", "fail", "ok-1", "ok-2"], seen
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages") is None


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies count as dead): the test shares the host with LocalStack."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")


def test_many_invocations_do_not_grow_localstacks_memory_mappings(make_function, invoke):
    """LocalStack keeps a thread per invocation (its metric) in TMP_THREADS; on Python 3.13 each
    kept finished thread holds two memory mappings, until vm.max_map_count stops LocalStack after
    ~32,000 invocations. The executor prunes finished threads: mappings stay flat."""
    from pathlib import Path

    pid_file = Path(__file__).resolve().parents[3] / ".herald" / "run" / "localstack.pid"
    if not pid_file.exists():
        pytest.skip("LocalStack was not started from this checkout (no pid file to read its mappings)")
    maps = Path(f"/proc/{pid_file.read_text().strip()}/maps")
    name = make_function(ECHO)
    for _ in range(20):  # warm: the environment, its threads and pools exist
        invoke(name)
    before = len(maps.read_text().splitlines())
    for _ in range(300):
        invoke(name)
    grown = len(maps.read_text().splitlines()) - before
    assert grown < 150, f"{grown} new memory mappings after 300 invocations (600 if no thread is freed)"
