"""Least privilege, checked: the IAM policy files Chalice attaches to each function's role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHALICE = ROOT / ".chalice"
POLICIES = sorted(CHALICE.glob("policy-*.json"))
# Actions that cannot be scoped to a resource (or, for sns:Publish, publish to phone numbers).
UNSCOPED = {"sns:Publish", "ses:SendEmail", "cloudwatch:GetMetricData"}
# The functions app.py defines, by the name Chalice's config uses for them.
FUNCTIONS = ["api_handler", "worker_critical", "worker_high", "worker_normal", "worker_low", "redrive_worker"]


def statements(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["Statement"])


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def policy_of(stage: str, function: str) -> Path:
    config = json.loads((CHALICE / "config.json").read_text())
    stage_config = config["stages"][stage]
    name = stage_config.get("lambda_functions", {}).get(function, {}).get("iam_policy_file")
    return CHALICE / (name or stage_config.get("iam_policy_file") or f"policy-{stage}.json")


def actions(stage: str, function: str) -> set[str]:
    return {a for s in statements(policy_of(stage, function)) for a in listed(s["Action"])}


def test_there_are_policy_files():
    assert len(POLICIES) >= 7


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_no_policy_grants_a_wildcard_action(path):
    for statement in statements(path):
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        for action in listed(statement["Action"]):
            _, _, name = action.partition(":")
            assert action != "*" and name and "*" not in name, f"{path.name}: {action}"


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_resources_are_the_stages_own_unless_the_action_cannot_be_scoped(path):
    stage = path.stem.split("-")[1]
    for statement in statements(path):
        for resource in listed(statement["Resource"]):
            if resource == "*":
                assert set(listed(statement["Action"])) <= UNSCOPED, f"{path.name}: {statement['Sid']}"
            else:
                assert f"herald-{stage}" in resource or f"/herald/{stage}/" in resource, f"{path.name}: {resource}"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_each_function_gets_only_what_it_calls(stage):
    api, worker, redrive = (actions(stage, f) for f in ("api_handler", "worker_normal", "redrive_worker"))
    assert len({policy_of(stage, f) for f in FUNCTIONS}) == 3
    # The API never receives from a queue, sends a text or moves a DLQ; it starts redrives.
    assert not {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sns:Publish", "ses:SendEmail"} & api
    assert not {"sqs:StartMessageMoveTask"} & api and "lambda:InvokeFunction" in api
    # Workers consume their queue and notify; they start nothing.
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sns:Publish", "ses:SendEmail"} <= worker
    assert not {"lambda:InvokeFunction", "sqs:StartMessageMoveTask", "dynamodb:DescribeTable"} & worker
    # The redrive worker moves dead letters and invokes itself; it notifies no one.
    assert {"sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks", "lambda:InvokeFunction"} <= redrive
    assert not {"sns:Publish", "ses:SendEmail", "ssm:GetParameters"} & redrive


def test_the_functions_policies_exist_for_every_stage():
    for stage in ("local", "dev", "prod"):
        for function in FUNCTIONS:
            assert policy_of(stage, function).is_file(), (stage, function)
