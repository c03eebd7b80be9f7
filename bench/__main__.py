"""`make bench`: every figure next to a baseline measured in the same run.

    python -m bench                   # all six, full size (about 10 minutes on 2 cores)
    python -m bench --quick           # smaller N everywhere (a smoke run)
    python -m bench --only pipeline,latency
    python -m bench --markdown        # print the last results (bench/results/latest.json) as Markdown

Exit status: 0 when every benchmark did all its work (a missed goal is reported, not an error),
1 when a benchmark could not finish its work (the message says which and why), 2 on bad usage.
The method is in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import cloud, harness
from bench.harness import (
    BenchFailure,
    DropMetricLines,
    Figure,
    markdown_table,
    say,
    table,
    write_results,
)

ORDER = ("calls", "coldstart", "latency", "fanout", "pipeline", "delays")


def _runners(args: argparse.Namespace) -> dict[str, Callable[[cloud.Stack], list[Figure]]]:
    quick = args.quick

    def module(name: str) -> Any:
        return importlib.import_module(f"bench.{name}")

    return {
        "calls": lambda stack: module("calls").run(stack, per_kind=2 if quick else 5),
        "coldstart": lambda stack: module("coldstart").run(stack, runs=5 if quick else 15),
        "latency": lambda stack: module("latency").run(stack, requests=40 if quick else 300),
        "fanout": lambda stack: module("fanout").run(stack, recipients=args.recipients or (1000 if quick else 10_000)),
        "pipeline": lambda stack: module("pipeline").run(stack, n=args.n or (200 if quick else 2000)),
        "delays": lambda stack: module("delays").run(stack, quick=quick),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("-n", type=int, default=0, help="pipeline jobs (default 2000; --quick 200)")
    parser.add_argument("--recipients", type=int, default=0, help="fan-out recipients (default 10000)")
    parser.add_argument("--markdown", action="store_true", help="print the latest results as Markdown and exit")
    args = parser.parse_args(argv)

    if args.markdown:
        if not harness.RESULTS.exists():
            print(f"no results yet ({harness.RESULTS}): run `make bench`", file=sys.stderr)
            return 1
        document = json.loads(harness.RESULTS.read_text())
        print(f"Measured {document['date']} on {document['machine']}.\n")
        print(markdown_table(document["figures"]))
        return 0

    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(ORDER)
    unknown = sorted(set(chosen) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")

    cloud.use_local_cloud()
    stdout, sys.stdout = sys.stdout, DropMetricLines(sys.stdout)
    try:
        return run_all([n for n in ORDER if n in chosen], _runners(args))
    finally:
        sys.stdout = stdout


def run_all(chosen: list[str], runners: dict[str, Callable[[cloud.Stack], list[Figure]]]) -> int:
    """Run the chosen benchmarks, print the table, write the JSON; 1 if any could not do its work."""
    started = time.monotonic()
    try:
        stack = cloud.ensure_stack()
        cloud.sweep()
        cloud.bench_tokens(stack)
    except BenchFailure as failure:
        print(f"\nBENCHMARKS NOT RUN: {failure}", file=sys.stderr)
        return 1
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    durations: dict[str, float] = {}
    try:
        for name in chosen:
            say(f"--- {name} ---")
            began = time.monotonic()
            try:
                produced = runners[name](stack)
                if not produced:
                    raise BenchFailure(f"{name} produced no figure")
            except BenchFailure as failure:
                failures[name] = str(failure)
                say(f"FAILED: {name}: {failure}")
            except Exception as error:  # a crash is a failure too, with its trace
                failures[name] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
                say(f"FAILED: {name} crashed: {error}")
            else:
                figures.extend(produced)
            durations[name] = time.monotonic() - began
    finally:
        cloud.drop_token(stack.token)

    total = time.monotonic() - started
    document: dict[str, Any] = write_results(figures, harness.RESULTS)
    print()
    print(table(figures))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        print("\nnotes:\n" + "\n".join(notes))
    print(f"\n{document['date']} on {document['machine']}")
    print(
        "durations: "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items())
        + f"; total {total:.0f} s"
    )
    print(f"written to {harness.RESULTS}")
    missed = [f.name for f in figures if f.met is False]
    if missed:
        print("goals missed (docs/benchmarks.md says where the time goes): " + "; ".join(missed))
    if failures:
        print("\nBENCHMARK FAILURES (their work was not fully done; no figure recorded):", file=sys.stderr)
        for name, message in failures.items():
            print(f"  {name}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
