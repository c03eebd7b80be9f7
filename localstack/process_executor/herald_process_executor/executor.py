"""LocalStack runtime executor that runs each Lambda execution environment as a local process.

Why: Herald's machines have no Docker engine, and LocalStack's only built-in executor starts a
container per environment. This one keeps LocalStack's runtime protocol (``executor_endpoint.py``)
and replaces the container with ``<runtime interpreter> bootstrap.py``, the interpreter of a runtime
venv named in ``HERALD_LAMBDA_RUNTIMES`` (e.g. ``{"python3.11": "/abs/.../bin/python"}``).

In Docker, the container's init (the RIE) enforces the timeout, notices a runtime that exits during
an invocation and restarts it. Without a container those duties move here: the executor kills the
process group on timeout, reports an exit as ``Runtime.ExitError`` and starts a fresh process on
the next invoke (a cold start, as on AWS after a reset).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from localstack.aws.api.lambda_ import PackageType
from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    InvokeSendError,
    ShutdownDuringStartup,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from werkzeug import Request

from localstack import config

LOG = logging.getLogger(__name__)

RUNTIMES_ENV = "HERALD_LAMBDA_RUNTIMES"
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
OUTPUT_LINES_KEPT = 5000
DYNAMODB_ENDPOINT = os.environ.get("HERALD_DYNAMODB_ENDPOINT", "")
POLL_SECONDS = 0.05  # how often a wait looks at the process; a result returns at once anyway

# All runtime processes are forked from this one long-lived thread: the bootstrap arms
# PR_SET_PDEATHSIG, and Linux fires it when the *thread* that forked the child ends, not the
# process. LocalStack starts environments from short-lived threads, which would kill functions
# at random; this thread lives as long as LocalStack does.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herald-lambda-spawner")


def prune_finished_threads() -> int:
    """Forget LocalStack's finished threads; how many were dropped.

    LocalStack starts a thread per invocation (to record its CloudWatch metric) and keeps every
    thread it starts in ``localstack.utils.threads.TMP_THREADS``, for its shutdown hook, forever.
    On Python 3.13 a finished thread that is still referenced and never joined keeps its stack
    mapped (two memory mappings): after about 32,000 invocations LocalStack reaches the kernel's
    ``vm.max_map_count`` and can start no thread at all. A finished thread needs no shutdown, so
    dropping it from the list loses nothing; its stack goes with its last reference.
    """
    from localstack.utils import threads

    dropped = 0
    try:
        for entry in list(threads.TMP_THREADS):
            # The list also holds other things with a shutdown (thread pools): left alone.
            if isinstance(entry, threading.Thread) and not entry.is_alive():
                with contextlib.suppress(ValueError):  # another invoke pruned it first
                    threads.TMP_THREADS.remove(entry)
                    dropped += 1
    except Exception:  # housekeeping must never fail an invocation
        LOG.exception("pruning LocalStack's finished threads failed")
    return dropped


def runtime_interpreters() -> dict[str, str]:
    """Parse HERALD_LAMBDA_RUNTIMES on each call, so a bad value shows in the version's reason."""
    raw = os.environ.get(RUNTIMES_ENV, "").strip() or "{}"
    try:
        mapping = json.loads(raw)
    except ValueError as e:
        raise LambdaRuntimeException(f"{RUNTIMES_ENV} is not valid JSON ({e}): {raw!r}") from e
    if not isinstance(mapping, dict):
        raise LambdaRuntimeException(f"{RUNTIMES_ENV} must be a JSON object: {raw!r}")
    return mapping


@functools.lru_cache
def interpreter_version(interpreter: str) -> str:
    """Ask the interpreter for its ``major.minor`` once (failures raise, so are not cached)."""
    probe = "import sys, importlib.util as u;print('%d.%d' % sys.version_info[:2], bool(u.find_spec('boto3')))"
    try:
        run = subprocess.run([interpreter, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise LambdaRuntimeException(f"Cannot run interpreter {interpreter}: {e}") from e
    if run.returncode:
        raise LambdaRuntimeException(f"Interpreter {interpreter} failed: {run.stderr.strip()}")
    version, has_boto3 = run.stdout.split()
    if has_boto3 != "True":  # AWS's runtime has it; without it functions fail confusingly
        LOG.warning("Lambda runtime interpreter %s has no boto3", interpreter)
    return version


def resolve_interpreter(runtime: str | None) -> str:
    """The interpreter for ``runtime``, checked against the runtime's Python version.

    Called when a function version is prepared, so a missing or wrong interpreter fails the version
    (State=Failed, this message as StateReason) at deploy time rather than at its first invoke.
    """
    if not runtime or not runtime.startswith("python"):
        raise LambdaRuntimeException(f"Runtime {runtime} is not supported (python runtimes only)")
    interpreter = runtime_interpreters().get(runtime)
    if not interpreter:
        raise LambdaRuntimeException(f"No interpreter for runtime {runtime} in {RUNTIMES_ENV}")
    expected, actual = runtime.removeprefix("python"), interpreter_version(interpreter)
    if actual != expected:
        raise LambdaRuntimeException(f"Runtime {runtime} needs Python {expected}, but {interpreter} is Python {actual}")
    return interpreter


def gateway_host() -> str:
    """The host functions use to reach LocalStack: its listen address, loopback if a wildcard."""
    host = config.GATEWAY_LISTEN[0].host
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


class ProcessEndpoint(ExecutorEndpoint):
    """LocalStack's callback endpoint, plus the port the runtime reports in its ready call.

    The runtime binds port 0 and says which port it got: choosing a free port here and handing it
    over would race when several environments start at once.
    """

    def status_ready(self, request: Request, executor_id: str) -> Response:
        self.container_port = int(json.loads(request.data or b"{}")["port"])
        return super().status_ready(request, executor_id)


class ProcessRuntimeExecutor(RuntimeExecutor):
    """One execution environment = one runtime process, reused warm for many invokes."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.endpoint = ProcessEndpoint(id, container_address="127.0.0.1", container_port=None)
        self.process: subprocess.Popen[bytes] | None = None
        self.pump: threading.Thread | None = None
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.stopped = False
        # Process output (stdout+stderr) for get_logs(), and for the logs of an invocation the
        # runtime could not report itself (timeout). output_count numbers lines ever read.
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        self.output_count = 0
        self.output_lock = threading.Lock()

    def start(self, env_vars: dict[str, str]) -> None:
        config_ = self.function_version.config
        interpreter = resolve_interpreter(config_.runtime)
        # A clean environment, as in AWS's sandbox: LocalStack's own variables (its config,
        # proxies) and the developer's ~/.aws files must not leak into functions.
        bin_dirs = [str(Path(interpreter).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        self.env = {
            "PATH": os.pathsep.join(bin_dirs),
            "LANG": "C.UTF-8",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            # This local cloud's DynamoDB is DynamoDB Local, beside LocalStack (whose own DynamoDB
            # cannot run here): point functions at it as LocalStack points them at itself. A
            # function's own AWS_ENDPOINT_URL_DYNAMODB (in env_vars) still wins.
            **({"AWS_ENDPOINT_URL_DYNAMODB": DYNAMODB_ENDPOINT} if DYNAMODB_ENDPOINT else {}),
            **{k: str(v) for k, v in env_vars.items()},  # LocalStack passes some ints
            "LAMBDA_TASK_ROOT": str(config_.code.get_unzipped_code_location()),
            "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{config_.runtime}",
            "HERALD_PARENT_PID": str(os.getpid()),
        }
        self.argv = [interpreter, "-u", str(BOOTSTRAP)]
        self._spawn()

    def _spawn(self) -> None:
        """Start the runtime process and wait for its ready (or init error) callback."""
        self.endpoint.start()  # (re-)registers the callback routes with a fresh startup future
        self.process = _SPAWNER.submit(
            subprocess.Popen,
            self.argv,
            env=self.env,
            cwd=self.env["LAMBDA_TASK_ROOT"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a kill takes the handler's children too
        ).result()
        self.pump = threading.Thread(target=self._pump, args=(self.process,), daemon=True)
        self.pump.start()
        try:
            # An init error raises StatusErrorException here: LocalStack turns its payload into
            # the invoke's error response.
            outcome, code = self._wait(self.endpoint.startup_future)
        except CancelledError as e:
            raise ShutdownDuringStartup("Environment stopped during startup") from e
        if outcome == "exited":
            self.pump.join(1)
            tail = "\n".join(list(self.output)[-20:])
            raise LambdaRuntimeException(f"Runtime exited with code {code} before ready:\n{tail}")

    def _wait(self, future: Future[Any], deadline: float = math.inf) -> tuple[str, Any]:
        """Wait for ``future`` while watching the process.

        Returns ("done", result), ("exited", exit code) or ("timeout", None).
        """
        while True:
            code = self.process.poll()
            wait = 0 if code is not None else min(POLL_SECONDS, deadline - time.monotonic())
            try:
                return "done", future.result(timeout=max(0.0, wait))
            except FutureTimeout:
                if code is not None:
                    return "exited", code
                if time.monotonic() >= deadline:
                    return "timeout", None

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            with self.output_lock:
                self.output.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.output_count += 1

    def _kill(self) -> None:
        """Kill the runtime's whole process group (the handler may have started children)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            LOG.warning("Lambda runtime process %s survived SIGKILL", self.process.pid)
        if self.pump:
            self.pump.join(1)  # collect the output written up to the kill

    def stop(self) -> None:
        self.stopped = True
        self._kill()
        try:
            self.endpoint.shutdown()
        except Exception as e:
            LOG.debug("Error while shutting down executor endpoint %s: %s", self.id, e)

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        """Send one invocation; wait for its result, the function's timeout or the runtime's exit.

        Written out instead of ExecutorEndpoint.invoke(), which waits up to 905 s and knows
        neither the function's timeout nor a dying process.
        """
        if self.stopped:
            raise LambdaRuntimeException(f"Execution environment {self.id} is stopped")
        prune_finished_threads()
        if self.process is None or self.process.poll() is not None:
            self._kill()  # killed by a timeout or exited: reset, like the RIE (a cold start)
            self._spawn()
        invoke_id, timeout = payload["invoke-id"], float(self.function_version.config.timeout)
        future: Future[InvocationResult] = Future()
        self.endpoint.invocation_future = future
        self.endpoint.logs = None
        mark, started = self.output_count, time.monotonic()
        body = {**payload, "deadline-ms": int((time.time() + timeout) * 1000)}
        url = f"http://127.0.0.1:{self.endpoint.container_port}/invoke"
        response = requests.post(url, json=body, proxies={"http": "", "https": ""}, timeout=10)
        if not response.ok:
            raise InvokeSendError(f"Runtime refused invocation {invoke_id}: {response.status_code}")
        outcome, value = self._wait(future, started + timeout)
        if outcome == "done":
            return value
        self._kill()  # timeout, or the leftovers of an exit: AWS resets the whole sandbox
        if outcome == "timeout":
            return self._failure(
                invoke_id,
                "Sandbox.Timedout",
                f"Task timed out after {timeout:.2f} seconds",
                mark,
                started,
            )
        if value > 0:
            reason = f"Runtime exited with error: exit status {value}"
        elif value < 0:  # worded like AWS's (Go) "signal: killed"
            reason = f"Runtime exited with error: signal: {(signal.strsignal(-value) or str(-value)).lower()}"
        else:
            reason = "Runtime exited without providing a reason"
        return self._failure(invoke_id, "Runtime.ExitError", reason, mark, started)

    def _failure(self, invoke_id: str, error_type: str, reason: str, mark: int, started: float) -> InvocationResult:
        """Error result and logs, shaped as AWS's, for an invocation the runtime did not finish."""
        logs = self.endpoint.logs  # the runtime reports its logs before it exits on sys.exit
        if logs is None:
            with self.output_lock:
                count = min(self.output_count - mark, len(self.output))
                logs = "".join(f"{line}\n" for line in list(self.output)[len(self.output) - count :])
        if error_type == "Sandbox.Timedout":
            logs += f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + f"Z {invoke_id} {reason}\n"
        else:
            logs += f"RequestId: {invoke_id} Error: {reason}\n{error_type}\n"
        ms = (time.monotonic() - started) * 1000
        memory = self.function_version.config.memory_size
        logs += (
            f"END RequestId: {invoke_id}\nREPORT RequestId: {invoke_id}\tDuration: {ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(ms)} ms\tMemory Size: {memory} MB\n"
        )
        error = {"errorType": error_type, "errorMessage": f"RequestId: {invoke_id} Error: {reason}"}
        return InvocationResult(invoke_id, json.dumps(error).encode(), is_error=True, logs=logs)

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return gateway_host()

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{gateway_host()}:{port}{self.endpoint.get_endpoint_prefix()}"

    def get_logs(self) -> str:
        with self.output_lock:
            return "\n".join(self.output)

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if function_version.config.package_type != PackageType.Zip:
            raise LambdaRuntimeException("The process executor runs Zip functions only")
        resolve_interpreter(function_version.config.runtime)
        function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to do: LocalStack owns the unzipped code; processes end with environments."""

    @classmethod
    def validate_environment(cls) -> bool:
        try:
            if runtime_interpreters():
                return True
            LOG.warning("%s is not set: no Lambda function can run", RUNTIMES_ENV)
        except LambdaRuntimeException as e:
            LOG.warning("%s", e)
        return False
