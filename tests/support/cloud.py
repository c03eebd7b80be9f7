"""The local cloud and the deployed stack, as test fixtures use them.

Set HERALD_TEST_API_URL (plus HERALD_TEST_STACK_FILE) to aim the API-level tests at a stack
deployed elsewhere (e.g. real AWS) instead of starting the local one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK = f"http://127.0.0.1:{os.environ.get('HERALD_LOCALSTACK_PORT', '4566')}"
DYNAMODB = f"http://127.0.0.1:{os.environ.get('HERALD_DYNAMODB_PORT', '8000')}"
REGION = "us-east-1"


def cloud_healthy() -> bool:
    return (
        subprocess.run(
            [sys.executable, str(ROOT / "localstack" / "cloud.py"), "status"], capture_output=True, check=False
        ).returncode
        == 0
    )


def cloud(command: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "localstack" / "cloud.py"), command], check=False)
    if result.returncode != 0:
        raise RuntimeError(f"localstack/cloud.py {command} failed (exit {result.returncode})")


def stray_processes() -> list[str]:
    """Processes still running from this project's local cloud (LocalStack, DynamoDB Local, Lambdas)."""
    marker = str(ROOT / ".herald")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline or ("bootstrap.py" in cmdline and str(ROOT) in cmdline):
            found.append(f"{proc.name}: {cmdline[:160]}")
    return found


@dataclass
class LocalCloud:
    endpoint: str = LOCALSTACK
    dynamodb_endpoint: str = DYNAMODB
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.dynamodb_endpoint if service == "dynamodb" else self.endpoint,
                region_name=REGION,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
        return self._clients[service]

    def sms_messages(self, phone: str | None = None) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.endpoint}/_aws/sns/sms-messages", timeout=10) as response:
            data = json.load(response)["sms_messages"]
        return [m for number, messages in data.items() if phone in (None, number) for m in messages]

    def emails(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.endpoint}/_aws/ses", timeout=10) as response:
            return list(json.load(response)["messages"])


def deploy_stack() -> dict[str, Any]:
    """Deploy (or reuse, when nothing changed) the app on the local cloud; returns stack.json."""
    subprocess.run([sys.executable, "-m", "infra.stack", "deploy", "--if-changed"], cwd=ROOT, check=True)
    return dict(json.loads((ROOT / ".herald" / "stack.json").read_text()))
