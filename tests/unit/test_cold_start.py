"""Cold starts pay for every import and every client built at module level: build none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import pkgutil, importlib, botocore.client, botocore.session, boto3.session
def refuse(*args, **kwargs):
    raise SystemExit("an AWS client or session was created at import time")
botocore.session.Session.create_client = refuse
boto3.session.Session.client = refuse
boto3.session.Session.resource = refuse
import app, chalicelib
for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
    importlib.import_module(module.name)
print("ok")
"""


def test_importing_app_and_every_chalicelib_module_creates_no_aws_client():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HERALD_STAGE": "local", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip() == "ok"


def test_the_probe_would_catch_a_client_built_at_import():
    leaky = PROBE.replace(
        "import app, chalicelib", "import boto3; boto3.session.Session().client('sqs')\nimport app, chalicelib"
    )
    result = subprocess.run(
        [sys.executable, "-c", leaky],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode != 0 and "created at import time" in result.stderr
