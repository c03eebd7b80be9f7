"""4. Cold start: the time to import `app` (what a Lambda cold start pays before the first event)
vs `import boto3` alone, with the Lambda runtime's Python and the deployed package.

The package is the one deployed to the local cloud (the API function's code, downloaded with
GetFunction), unzipped into a scratch directory and put first on `sys.path` as Lambda does
(`/var/task`). The interpreter is the runtime venv's (`.herald/venvs/runtime-python3.11`: boto3
only, precompiled by pip as AWS's runtime is). Bytecode is not written (PYTHONDONTWRITEBYTECODE),
as on Lambda's read-only `/var/task`: what the package does not ship as .pyc is compiled on every
cold start. Each measurement is a fresh process, timing the import inside it (interpreter start
excluded, the same for both); the two kinds alternate, and the figure is the median.

When the goal is missed the benchmark says where the time goes: one `python -X importtime`
run of `import app`, summed by top-level package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile
from collections import defaultdict
from pathlib import Path

from bench.cloud import Stack, client
from bench.harness import ROOT, BenchFailure, Figure, check, median, say

RUNTIME_PYTHON = ROOT / ".herald" / "venvs" / "runtime-python3.11" / "bin" / "python"
TIMED = "import time\nt = time.perf_counter()\nimport {module}\nprint(f'{{(time.perf_counter() - t) * 1000:.3f}}')\n"


def package(stack: Stack, into: Path) -> Path:
    """The deployed package of the API function, unzipped."""
    code = client("lambda").get_function(FunctionName=stack.function("api_handler"))["Code"]
    archive = into / "package.zip"
    with urllib.request.urlopen(code["Location"], timeout=60) as response, archive.open("wb") as out:
        shutil.copyfileobj(response, out)
    task = into / "task"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(task)
    check((task / "app.py").exists(), "cold start: the deployed package has no app.py")
    return task


def _env(task: Path | None) -> dict[str, str]:
    return {
        "PATH": f"{RUNTIME_PYTHON.parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        **({"PYTHONPATH": str(task)} if task else {}),  # first on sys.path, as /var/task is
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only on Lambda
        "HERALD_STAGE": "local",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "herald",
        "AWS_LAMBDA_FUNCTION_NAME": "herald-local",
    }


def _runtime(task: Path | None, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The runtime venv's Python with `args`, in a Lambda-like environment (`task`: the package, or none)."""
    return subprocess.run(
        [str(RUNTIME_PYTHON), *args],
        cwd=cwd,
        env=_env(task),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def time_import(task: Path | None, module: str, cwd: Path) -> float:
    """Milliseconds to import `module` in a fresh runtime process (`task`: the package, or none)."""
    result = _runtime(task, cwd, "-c", TIMED.format(module=module))
    if result.returncode != 0:
        raise BenchFailure(f"cold start: `import {module}` failed in the runtime venv:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def where_the_time_goes(task: Path, top: int = 8) -> list[tuple[str, float, str]]:
    """`-X importtime` of `import app`: self time summed by top-level package, with where it was loaded from."""
    result = _runtime(task, task, "-X", "importtime", "-c", "import app")
    if result.returncode != 0:
        raise BenchFailure(f"cold start: `python -X importtime -c 'import app'` failed:\n{result.stderr[-2000:]}")
    by_package: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
        if match:
            by_package[match.group(3).split(".")[0]] += int(match.group(1)) / 1000
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    return [
        (name, ms, "package" if (task / name).exists() or (task / f"{name}.py").exists() else "runtime")
        for name, ms in ranked
    ]


def shadowing(task: Path) -> list[str]:
    """Top-level modules the package ships that the runtime already has (they win: no .pyc)."""
    site = next(RUNTIME_PYTHON.parent.parent.glob("lib/python3.*/site-packages"))
    runtime = {p.name.removesuffix(".py") for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))}
    runtime -= {"__pycache__", "pip", "setuptools", "pkg_resources", "_distutils_hack"}
    return sorted(p.name.removesuffix(".py") for p in task.iterdir() if p.name.removesuffix(".py") in runtime)


def _variant(task: Path, into: Path, *, drop: tuple[str, ...] = (), compile_: bool = False) -> Path:
    """A copy of the package without `drop`, optionally with .pyc (what-if measurements)."""
    copy = into / ("variant-" + "-".join(drop or ("all",)) + ("-pyc" if compile_ else ""))

    def top_level(directory: str, names: list[str]) -> set[str]:
        if Path(directory) != task:
            return set()
        return {n for n in names if n.removesuffix(".py") in drop}

    shutil.copytree(task, copy, ignore=top_level)
    if compile_:
        # unchecked-hash: valid whatever the zip does to mtimes, as a package would ship them
        result = subprocess.run(
            [str(RUNTIME_PYTHON), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(copy)],
            capture_output=True,
            text=True,
            check=False,
        )
        check(
            result.returncode == 0,
            f"cold start: compileall failed on the what-if package {copy.name}:\n"
            f"{(result.stdout + result.stderr)[-2000:]}",
        )
    return copy


def run(stack: Stack, runs: int) -> list[Figure]:
    check(RUNTIME_PYTHON.exists(), f"cold start: no runtime venv at {RUNTIME_PYTHON} (run `make up`)")
    scratch = Path(tempfile.mkdtemp(prefix="herald-bench-coldstart-"))
    try:
        task = package(stack, scratch)
        empty = scratch / "empty"
        empty.mkdir()
        size = sum(f.stat().st_size for f in task.rglob("*") if f.is_file()) / 1e6
        pyc = sum(1 for _ in task.rglob("*.pyc"))
        shadowed = shadowing(task)
        # What-ifs, measured in the same rounds (the machine's load drifts): the package without
        # the libraries the runtime already has (what dropping the [tracer] extra, i.e.
        # aws-xray-sdk and the botocore it pulls in, would ship), then also with bytecode.
        variants: dict[str, Path] = {}
        drop = (*shadowed, "aws_xray_sdk", "wrapt") if shadowed else ()
        if drop:
            variants["without the runtime's own libraries"] = _variant(task, scratch, drop=drop)
        if pyc < 100:
            variants["... and with .pyc" if drop else "with .pyc"] = _variant(task, scratch, drop=drop, compile_=True)
        say(
            f"cold start: deployed package {size:.0f} MB unzipped, {pyc} .pyc files, ships {', '.join(shadowed) or '-'}"
            f" of the runtime's own; {runs} rounds of import app / import boto3"
            + (f" / {len(variants)} what-if packages" if variants else "")
        )
        for copy in (task, *variants.values()):
            time_import(copy, "app", copy)  # page cache warm: every measured run reads the same files
        app_ms: list[float] = []
        boto3_ms: list[float] = []
        what_if_ms: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(runs):
            app_ms.append(time_import(task, "app", task))
            boto3_ms.append(time_import(None, "boto3", empty))  # a function that only imports boto3
            for label, copy in variants.items():
                what_if_ms[label].append(time_import(copy, "app", copy))
        app_median, boto3_median = median(app_ms), median(boto3_ms)
        say(f"cold start: import app {app_median:.0f} ms, import boto3 {boto3_median:.0f} ms (medians)")
        what_if = [
            f"{label}: {median(ms):.0f} ms ({median(ms) / boto3_median:.2f}x)" for label, ms in what_if_ms.items()
        ]
        if what_if:
            say("cold start: what if the package were ... " + "; ".join(what_if))
        profile = where_the_time_goes(task)
        say(
            "cold start: where `import app` spends its time (self time by top-level package): "
            + ", ".join(f"{name} {ms:.0f} ms ({where})" for name, ms, where in profile)
        )
        note = "median of fresh processes, runtime venv Python, deployed package first on sys.path; top: " + ", ".join(
            f"{name} {ms:.0f} ms" for name, ms, _ in profile[:4]
        )
        if shadowed:
            note += f"; the package ships its own {', '.join(shadowed)} (shadowing the runtime's precompiled ones)"
        if what_if:
            note += "; what if: " + "; ".join(what_if)
        return [
            Figure(
                "cold start: import app vs import boto3", app_median, "ms", boto3_median, goal="ratio <= 1.5", note=note
            )
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
