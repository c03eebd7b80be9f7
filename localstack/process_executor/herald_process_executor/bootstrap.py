"""Herald's Lambda runtime bootstrap, run by the function's own interpreter (stdlib only).

It stands in for what LocalStack's container holds (its init plus AWS's Python runtime client):
it loads the handler as AWS does, then speaks LocalStack's runtime protocol. Stdlib only,
because it runs in the runtime venv, which holds only what AWS's Python runtime holds.

Protocol (LocalStack's ``executor_endpoint.py``):
- start: POST ``{LOCALSTACK_RUNTIME_ENDPOINT}/status/{LOCALSTACK_RUNTIME_ID}/ready`` with
  ``{"port": N}`` (the port this runtime bound), or ``.../error`` with an AWS error body;
- LocalStack POSTs ``{"invoke-id", "invoked-function-arn", "payload", "trace-id"}`` (plus the
  executor's ``deadline-ms``) to ``/invoke``; we answer 200 at once and queue it;
- per invocation: POST ``/invocations/{id}/logs`` BEFORE ``/invocations/{id}/response`` or
  ``/invocations/{id}/error`` (LocalStack attaches the logs it holds when the result arrives).

Timeouts and exits are the executor's business: it kills this process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import decimal
import http.server
import importlib
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

ENDPOINT = os.environ["LOCALSTACK_RUNTIME_ENDPOINT"]
RUNTIME_ID = os.environ["LOCALSTACK_RUNTIME_ID"]
PR_SET_PDEATHSIG = 1

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_INVOCATIONS: queue.Queue[dict[str, Any]] = queue.Queue()
_LOG_LOCK = threading.Lock()
_LOG_BUFFER: list[str] = []
_CURRENT_REQUEST_ID = ""


class Fault(Exception):
    """A runtime-level error with AWS's errorType (Runtime.ImportModuleError, ...)."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type, self.message, self.trace = error_type, message, trace or []


def post(path: str, body: bytes) -> None:
    request = urllib.request.Request(
        ENDPOINT + path, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=30) as response:
        response.read()


def to_json(value: Any) -> bytes:
    """Serialise like AWS's runtime, which accepts Decimal (DynamoDB numbers)."""

    def default(o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return float(o)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    return json.dumps(value, default=default).encode()


def error_body(error_type: str, message: str, trace: list[str], request_id: str = "") -> bytes:
    """Print the error as AWS's runtime logs it, and return the error document it returns."""
    print(
        f"[ERROR] {error_type}: {message}",
        *(["Traceback (most recent call last):"] if trace else []),
        *[line.rstrip("\n") for line in trace],
        sep="\n",
    )
    return to_json(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": trace,
        }
    )


def exception_body(exc: BaseException, request_id: str = "") -> bytes:
    """AWS's error document for an exception raised by user code (bootstrap frames dropped)."""
    # Plain tuples: AWS's stackTrace has no 3.11-style "^^^^" column markers.
    frames = [
        (f.filename, f.lineno, f.name, f.line)
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename != __file__
    ]
    return error_body(type(exc).__name__, str(exc), traceback.format_list(frames), request_id)


# -- process hygiene ---------------------------------------------------------------------------


def die_with_parent() -> None:
    """Exit, with the handler's children, when LocalStack dies, even by SIGKILL.

    PR_SET_PDEATHSIG sends us SIGTERM when the parent goes; our SIGTERM kills our whole process
    group (the executor starts us in a new session, so that group is this function's processes).
    """
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    with contextlib.suppress(OSError, AttributeError):  # not Linux: stop() still kills us
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    expected_parent = os.environ.pop("HERALD_PARENT_PID", "")
    if expected_parent and os.getppid() != int(expected_parent):
        os._exit(1)  # LocalStack died before prctl took effect


class _Capture:
    """Tee for sys.stdout/sys.stderr: to the process output (LocalStack's get_logs and the
    executor's timeout logs) and to the current invocation's log (LogType=Tail, CloudWatch)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text)
        self._stream.flush()
        with _LOG_LOCK:
            _LOG_BUFFER.append(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def take_logs() -> str:
    with _LOG_LOCK:
        text = "".join(_LOG_BUFFER)
        _LOG_BUFFER.clear()
    return text


def install_logging() -> None:
    """A root handler formatted like AWS's Python runtime: WARNING by default, so a function's
    logging.basicConfig() is a no-op here as there, and records carry the request id."""

    class RequestIdFilter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.aws_request_id = _CURRENT_REQUEST_ID
            return True

    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    if level := os.environ.get("AWS_LAMBDA_LOG_LEVEL"):
        root.setLevel(level.upper())


# -- handler and context -----------------------------------------------------------------------


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """Resolve ``module.sub.func`` with AWS's rules and error types."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {e}") from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {e}") from None
    except SyntaxError as e:
        raise Fault(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{module_name}': {e}",
            [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}'],
        ) from None
    handler = getattr(module, function_name, None)
    if handler is None:
        # AWS starts fine and fails each invoke with this.
        fault = Fault(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )

        def handler(event: Any, context: Any) -> Any:
            raise fault

    return handler


class CognitoIdentity:
    cognito_identity_id = None
    cognito_identity_pool_id = None


class LambdaContext:
    """The ``context`` argument, with the attributes of AWS's Python runtime."""

    def __init__(self, request_id: str, function_arn: str, deadline_ms: int) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str, as on AWS
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(str(message))


# -- serving -----------------------------------------------------------------------------------


class InvokeHandler(http.server.BaseHTTPRequestHandler):
    """Takes LocalStack's /invoke: answers 200 at once; the main thread runs the handler."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/invoke":
            self.send_response(404)
        else:
            _INVOCATIONS.put(json.loads(body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stderr is the function's log


def run_invocation(handler: Callable[[Any, Any], Any], request: dict[str, Any]) -> None:
    global _CURRENT_REQUEST_ID
    request_id = _CURRENT_REQUEST_ID = request["invoke-id"]
    timeout_ms = int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3")) * 1000
    deadline_ms = request.get("deadline-ms") or int(time.time() * 1000) + timeout_ms
    os.environ["_X_AMZN_TRACE_ID"] = request.get("trace-id") or ""
    context = LambdaContext(request_id, request["invoked-function-arn"], deadline_ms)
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    print(f"START RequestId: {request_id} Version: {version}")
    started = time.monotonic()
    failed = True
    try:
        event = json.loads(request.get("payload") or "{}")
        result = handler(event, context)
        try:
            body, failed = to_json(result), False
        except (TypeError, ValueError) as e:
            body = error_body("Runtime.MarshalError", f"Unable to marshal response: {e}", [], request_id)
    except SystemExit as e:
        # AWS: the runtime process exits and the invoke fails with Runtime.ExitError. Report the
        # logs so far, then exit for real; the executor sees the exit and answers the invoke.
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)  # as Python does for sys.exit("message")
        post(f"/invocations/{request_id}/logs", json.dumps({"logs": take_logs()}).encode())
        os._exit(code)
    except Fault as f:
        body = error_body(f.error_type, f.message, f.trace, request_id)
    except Exception as e:
        body = exception_body(e, request_id)
    duration = (time.monotonic() - started) * 1000
    print(f"END RequestId: {request_id}")
    print(
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration)} ms\t"
        f"Memory Size: {context.memory_limit_in_mb} MB"
    )
    post(f"/invocations/{request_id}/logs", json.dumps({"logs": take_logs()}).encode())
    post(f"/invocations/{request_id}/{'error' if failed else 'response'}", body)
    _CURRENT_REQUEST_ID = ""


def main() -> None:
    die_with_parent()
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]  # the executor's package is no business of the function's
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])  # code first, as on AWS
    sys.stdout, sys.stderr = _Capture(sys.stdout), _Capture(sys.stderr)
    install_logging()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), InvokeHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="invoke-server", daemon=True).start()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Fault as f:
        post(f"/status/{RUNTIME_ID}/error", error_body(f.error_type, f.message, f.trace))
        sys.exit(1)
    except Exception as e:  # the module raised while being imported
        post(f"/status/{RUNTIME_ID}/error", exception_body(e))
        sys.exit(1)
    post(f"/status/{RUNTIME_ID}/ready", json.dumps({"port": server.server_address[1]}).encode())
    while True:  # handlers run on the main thread, as on AWS (signals work there)
        run_invocation(handler, _INVOCATIONS.get())


if __name__ == "__main__":
    main()
