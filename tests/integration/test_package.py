"""`make package` end to end: chalice package + the infra template, both through cfn-lint.

Needs no cloud, but `chalice package` may fetch wheels from PyPI the first time, so it is not in
the socket-less unit suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.enable_socket]

ROOT = Path(__file__).resolve().parents[2]


def test_make_package_builds_artifacts_that_pass_cfn_lint(tmp_path):
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "infra.package", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cfn-lint: no errors" in result.stdout
    sam = json.loads((out / "sam.json").read_text())
    assert (out / "deployment.zip").stat().st_size > 0
    infra = json.loads((out / "infra.json").read_text())
    assert {"NormalQueue", "NormalDeadLetterQueue", "Table"} <= set(infra["Resources"])
    functions = {k: r for k, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert {"APIHandler", "RedriveWorker", "WorkerNormal"} <= set(functions)
    for function in functions.values():
        for event in (function["Properties"].get("Events") or {}).values():
            if event["Type"] == "SQS":
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
                assert "herald-prod-" in json.dumps(event["Properties"]["Queue"])
    roles = {k: r for k, r in sam["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert len(roles) == len(functions)  # one role per function
    granted = json.dumps([r["Properties"]["Policies"] for r in roles.values()])
    assert '"*"' not in granted.replace('"Resource": "*"', "")
    assert functions["RedriveWorker"]["Properties"]["Timeout"] == 300
