"""Build the artifacts that deploy Herald to real AWS, and check them with cfn-lint.

    python -m infra.package [--stage prod] [--out dist] [--no-lint]     (make package)

Writes:
  dist/sam.json, dist/deployment.zip   `chalice package` output (the API, the queue workers, the
                                       redrive worker, one IAM role each), patched for what Chalice
                                       cannot express: ReportBatchItemFailures on the SQS event
                                       sources, and unknown routes answering the contract's 404;
  dist/infra.json                      queues, DLQs, table and alarms (infra/template.py).

Deploy infra.json first (the functions' event sources name its queues), then the app; see the
README ("Deploy to AWS") and docs/operations.md. cfn-lint errors fail the build; warnings print.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra import bytecode
from infra.template import template

ROOT = Path(__file__).resolve().parent.parent
NOT_FOUND_BODY = json.dumps({"error": {"code": "not_found", "message": "No such route."}})
# API Gateway answers a path with no route as MISSING_AUTHENTICATION_TOKEN (403 by default).
NOT_FOUND_RESPONSES = ("MISSING_AUTHENTICATION_TOKEN", "RESOURCE_NOT_FOUND")


def say(message: str) -> None:
    print(f"[package] {message}", flush=True)


def chalice_package(stage: str, out: Path) -> None:
    """`chalice package` for the stage; app.py names its queues from HERALD_STAGE at import."""
    env = {**os.environ, "HERALD_STAGE": stage}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        env.pop(name, None)
    bytecode.prepare()  # the package Chalice is about to build, built now and given its .pyc
    chalice = Path(sys.executable).parent / "chalice"
    result = subprocess.run(
        [str(chalice), "package", "--stage", stage, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"chalice package failed:\n{result.stdout}{result.stderr}")


def patch_sam(doc: dict[str, Any]) -> dict[str, Any]:
    """ReportBatchItemFailures on every SQS event source; the contract's 404 for unknown routes."""
    resources: dict[str, Any] = doc["Resources"]
    sources = 0
    for resource in resources.values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            if event.get("Type") == "SQS":
                event["Properties"]["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
                sources += 1
    apis = [name for name, r in resources.items() if r.get("Type") == "AWS::Serverless::Api"]
    for api in apis:
        responses = {
            kind: {
                "statusCode": 404,
                "responseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
                "responseTemplates": {"application/json": NOT_FOUND_BODY},
            }
            for kind in NOT_FOUND_RESPONSES
        }
        # In the definition, so SAM's deployment (a snapshot of the definition) carries them ...
        resources[api]["Properties"]["DefinitionBody"]["x-amazon-apigateway-gateway-responses"] = responses
        # ... and as resources, so they are visible and managed on their own.
        for kind in NOT_FOUND_RESPONSES:
            logical = api + "".join(part.capitalize() for part in kind.split("_")) + "Response"
            resources[logical] = {
                "Type": "AWS::ApiGateway::GatewayResponse",
                "Properties": {
                    "RestApiId": {"Ref": api},
                    "ResponseType": kind,
                    "StatusCode": "404",
                    "ResponseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
                    "ResponseTemplates": {"application/json": NOT_FOUND_BODY},
                },
            }
    if sources == 0 or not apis:
        raise SystemExit("the SAM template has no SQS event source or no API: is it Chalice's?")
    return doc


def lint(paths: list[Path]) -> None:
    """cfn-lint; its exit code is a bit mask: 2 = errors, 4 = warnings, 8 = informational."""
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    if cfn_lint is None:
        sys.exit("cfn-lint is missing: pip install -r requirements-dev.txt (cfn-lint==1.58.0)")
    result = subprocess.run([cfn_lint, "--", *map(str, paths)], capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if output:
        print(output)
    if result.returncode & 2 or result.returncode == 1:
        sys.exit(f"cfn-lint found errors (exit {result.returncode})")
    say("cfn-lint: no errors" + (" (warnings above)" if result.returncode & 4 else ""))


def build(stage: str, out: Path, run_lint: bool = True) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    say(f"chalice package --stage {stage} ...")
    chalice_package(stage, out)
    sam_file = out / "sam.json"
    sam_file.write_text(json.dumps(patch_sam(json.loads(sam_file.read_text())), indent=2) + "\n")
    infra_file = out / "infra.json"
    infra_file.write_text(json.dumps(template(), indent=2) + "\n")
    say(f"wrote {sam_file}, {out / 'deployment.zip'} and {infra_file}")
    if run_lint:
        lint([sam_file, infra_file])
    return [sam_file, infra_file]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Herald's real-AWS artifacts into dist/.")
    parser.add_argument("--stage", default="prod", choices=["dev", "prod"])
    parser.add_argument("--out", default=str(ROOT / "dist"))
    parser.add_argument("--no-lint", action="store_true", help="skip cfn-lint")
    args = parser.parse_args(argv)
    build(args.stage, Path(args.out), run_lint=not args.no_lint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
