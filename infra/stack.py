"""Deploy Herald onto the running local cloud, and describe what is deployed.

    python -m infra.stack deploy     # infra template, chalice deploy --stage local, post-deploy, seed
    python -m infra.stack info       # print .herald/stack.json

Run with the app venv's Python. The local cloud must be up (`python localstack/cloud.py up`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from infra import bytecode

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".herald"
STACK_FILE = STATE / "stack.json"
REGION = "us-east-1"
LOCALSTACK = f"http://127.0.0.1:{os.environ.get('HERALD_LOCALSTACK_PORT', '4566')}"
DYNAMODB = f"http://127.0.0.1:{os.environ.get('HERALD_DYNAMODB_PORT', '8000')}"
WORKER_TIMEOUT_S = 30
PRIORITIES = ("critical", "high", "normal", "low")
DEMO_ORGS = {"acme-cold-chain": "Acme Cold Chain", "globex-foods": "Globex Foods"}


def local_env() -> dict[str, str]:
    """The environment that aims boto3 and Chalice at the local cloud."""
    return {
        "AWS_ENDPOINT_URL": LOCALSTACK,
        "AWS_ENDPOINT_URL_DYNAMODB": DYNAMODB,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "HERALD_STAGE": "local",
    }


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def _deployed_file(stage: str) -> Path:
    return ROOT / ".chalice" / "deployed" / f"{stage}.json"


def chalice_deploy(stage: str) -> dict[str, Any]:
    deployed = _deployed_file(stage)
    boot = STATE / "run" / "boot-id"
    marker = STATE / "run" / f"deployed-boot-{stage}"
    # LocalStack keeps no state across restarts: Chalice's record of a previous cloud is stale.
    if deployed.exists() and (not marker.exists() or not boot.exists() or marker.read_text() != boot.read_text()):
        deployed.unlink()
    started = time.monotonic()
    bytecode.prepare()  # the package Chalice is about to build, built now and given its .pyc
    say(f"chalice deploy --stage {stage} (packages requirements.txt as on AWS)...")
    log = STATE / "logs" / "chalice-deploy.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    chalice = Path(sys.executable).parent / "chalice"
    with log.open("w") as out:
        result = subprocess.run(
            [str(chalice), "deploy", "--stage", stage],
            cwd=ROOT,
            env={**os.environ, **local_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        sys.exit(f"chalice deploy failed; the end of {log}:\n" + "\n".join(log.read_text().splitlines()[-25:]))
    if boot.exists():
        marker.write_text(boot.read_text())
    say(f"deployed in {time.monotonic() - started:.0f} s")
    return dict(json.loads(deployed.read_text()))


def _resources(deployed: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in deployed["resources"] if r["resource_type"] == kind]


def post_deploy(deployed: dict[str, Any]) -> str:
    """What Chalice cannot do: ReportBatchItemFailures on the SQS mappings, 404s for unknown routes."""
    import boto3

    lam = boto3.client("lambda")
    for mapping in _resources(deployed, "sqs_event"):
        uuid = mapping["event_uuid"]
        current = lam.get_event_source_mapping(UUID=uuid)
        if current.get("FunctionResponseTypes") != ["ReportBatchItemFailures"] or current.get("BatchSize") != 10:
            lam.update_event_source_mapping(
                UUID=uuid,
                FunctionResponseTypes=["ReportBatchItemFailures"],
                BatchSize=10,
                MaximumBatchingWindowInSeconds=0,
            )
    api = _resources(deployed, "rest_api")[0]
    api_id = api["rest_api_id"]
    apigw = boto3.client("apigateway")
    body = json.dumps({"error": {"code": "not_found", "message": "No such route."}})
    changed = False
    for response_type in ("MISSING_AUTHENTICATION_TOKEN", "RESOURCE_NOT_FOUND"):
        try:
            existing = apigw.get_gateway_response(restApiId=api_id, responseType=response_type)
            if (
                existing.get("statusCode") == "404"
                and existing.get("responseTemplates", {}).get("application/json") == body
            ):
                continue
        except apigw.exceptions.NotFoundException:
            pass
        apigw.put_gateway_response(
            restApiId=api_id, responseType=response_type, statusCode="404", responseTemplates={"application/json": body}
        )
        changed = True
    if changed:
        apigw.create_deployment(restApiId=api_id, stageName="api")
    return f"{LOCALSTACK}/_aws/execute-api/{api_id}/api"


def seed(api_url: str) -> dict[str, Any]:
    """Two demo organizations with a member and an admin token each, and an operator token.

    Tokens are kept across runs (read back from stack.json) and stored hashed; a rerun re-puts
    the same hashes, so it is idempotent and survives a restart of DynamoDB Local too.
    """
    from chalicelib.auth import Principal, new_token
    from chalicelib.services import build

    svc = build()
    previous: dict[str, Any] = json.loads(STACK_FILE.read_text()) if STACK_FILE.exists() else {}
    old_tokens = previous.get("tokens", {})
    tokens: dict[str, dict[str, str]] = {}
    for org_id, name in DEMO_ORGS.items():
        svc.orgs.put_org(org_id, name)
        tokens[org_id] = {}
        for role in ("member", "admin"):
            token = old_tokens.get(org_id, {}).get(role) or new_token()
            svc.tokens.put(token, Principal(role=role, org_id=org_id), name=f"{org_id} demo {role}")
            tokens[org_id][role] = token
    operator = previous.get("operator_token") or new_token()
    svc.tokens.put(operator, Principal(role="operator", org_id=None), name="local operator")
    # SES sends only from verified identities (LocalStack too): verify the stage's sender, as an
    # operator does once on AWS, so escalation and digest emails go out locally.
    import boto3

    boto3.client("ses").verify_email_identity(EmailAddress=svc.settings.email_source)
    stack = {
        "api_url": api_url,
        "dashboard_url": f"{api_url}/admin",
        "aws_endpoint": LOCALSTACK,
        "dynamodb_endpoint": DYNAMODB,
        "tokens": tokens,
        "operator_token": operator,
    }
    STACK_FILE.write_text(json.dumps(stack, indent=2) + "\n")
    return stack


def code_fingerprint() -> str:
    """What a deployment depends on: a rerun of `make up` with none of it changed skips chalice."""
    digest = hashlib.sha256()
    files = [ROOT / "app.py", ROOT / "requirements.txt", ROOT / ".chalice" / "config.json"]
    files += sorted(p for p in (ROOT / "chalicelib").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += sorted((ROOT / ".chalice").glob("policy-*.json")) + sorted((ROOT / "infra").glob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    boot = STATE / "run" / "boot-id"
    digest.update(boot.read_bytes() if boot.exists() else b"")
    return digest.hexdigest()[:16]


def deploy(stage: str = "local", force: bool = True) -> dict[str, Any]:
    os.environ.update(local_env())
    sys.path.insert(0, str(ROOT))
    from infra.apply import apply

    marker = STATE / "run" / f"deployed-code-{stage}"
    fingerprint = code_fingerprint()
    if not force and STACK_FILE.exists() and marker.exists() and marker.read_text() == fingerprint:
        say("nothing changed since the last deploy: reusing it (make up --force-deploy: FORCE=1)")
        return dict(json.loads(STACK_FILE.read_text()))
    apply(stage, {"VisibilityTimeoutSeconds": 6 * WORKER_TIMEOUT_S}, log=say)
    deployed = chalice_deploy(stage)
    api_url = post_deploy(deployed)
    stack = seed(api_url)
    say(f"seeded {len(DEMO_ORGS)} demo organizations")
    marker.write_text(fingerprint)
    return stack


def show(stack: dict[str, Any]) -> None:
    print()
    print(f"  API:        {stack['api_url']}")
    print(f"  Dashboard:  {stack['dashboard_url']}")
    print(f"  Health:     {stack['api_url']}/health")
    for org_id, roles in stack["tokens"].items():
        for role, token in roles.items():
            print(f"  {org_id:<16} {role:<7} {token}")
    print(f"  {'operator':<24} {stack['operator_token']}")
    print(f"\n  Written to {STACK_FILE.relative_to(ROOT)}. Try: curl {stack['api_url']}/health\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["deploy", "info"])
    parser.add_argument("--if-changed", action="store_true", help="skip when code and cloud are as last deployed")
    args = parser.parse_args(argv)
    if args.command == "deploy":
        show(deploy(force=not args.if_changed))
    elif STACK_FILE.exists():
        show(json.loads(STACK_FILE.read_text()))
    else:
        print("No stack yet: run `make up`.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
