"""Apply infra/template.py's CloudFormation template to the local cloud, through boto3.

LocalStack's own DynamoDB cannot run here (it needs Java 21 and a download), so the table goes
to DynamoDB Local while the queues and alarms go to LocalStack. This applier understands the
few resource types and intrinsics the template uses, and is idempotent: applying twice changes
nothing. Real AWS deployments use CloudFormation itself with the same template.

    python -m infra.apply --stage local
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.template import template

SQS_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
    "RedrivePolicy": "RedrivePolicy",
}


class Resolver:
    """Evaluates Ref, Fn::Sub and Fn::GetAtt against parameters and applied resources."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.values: dict[str, Any] = dict(parameters)
        self.attributes: dict[tuple[str, str], Any] = {}

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            return self.values[node["Ref"]]
        if set(node) == {"Fn::Sub"}:
            text = node["Fn::Sub"]
            for name, value in self.values.items():
                text = text.replace("${" + name + "}", str(value))
            return text
        if set(node) == {"Fn::GetAtt"}:
            logical, attribute = node["Fn::GetAtt"]
            return self.attributes[(logical, attribute)]
        return {key: self(value) for key, value in node.items()}


def _apply_queue(sqs: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    attributes = {
        SQS_ATTRIBUTES[key]: json.dumps(value)
        if isinstance(value, dict)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in props.items()
        if key in SQS_ATTRIBUTES
    }
    name = props["QueueName"]
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    except ClientError as err:
        if "NonExistentQueue" not in str(err.response["Error"]["Code"]):
            raise
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, {"Arn": arn, "QueueName": name}


def _apply_table(ddb: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    name = props["TableName"]
    try:
        description = ddb.describe_table(TableName=name)["Table"]
    except ddb.exceptions.ResourceNotFoundException:
        gsis = [{k: v for k, v in gsi.items()} for gsi in props.get("GlobalSecondaryIndexes", [])]
        ddb.create_table(
            TableName=name,
            BillingMode=props["BillingMode"],
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            **({"GlobalSecondaryIndexes": gsis} if gsis else {}),
        )
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        description = ddb.describe_table(TableName=name)["Table"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return name, {"Arn": description["TableArn"]}


def _apply_topic(sns: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    arn = sns.create_topic(Name=props["TopicName"])["TopicArn"]  # create is idempotent by name
    return arn, {"TopicName": props["TopicName"]}


def _apply_subscription(sns: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    topic, protocol, endpoint = props["TopicArn"], props["Protocol"], props["Endpoint"]
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
        for existing in page.get("Subscriptions", []):
            if (existing["Protocol"], existing["Endpoint"]) == (protocol, endpoint):
                return str(existing["SubscriptionArn"]), {}
    arn = sns.subscribe(TopicArn=topic, Protocol=protocol, Endpoint=endpoint, ReturnSubscriptionArn=True)
    return str(arn["SubscriptionArn"]), {}


def condition_holds(conditions: dict[str, Any], name: str, resolve: Resolver) -> bool:
    """The template's conditions: Fn::Not and Fn::Equals over resolved values."""

    def evaluate(node: Any) -> bool:
        if "Fn::Not" in node:
            return not evaluate(node["Fn::Not"][0])
        if "Fn::Equals" in node:
            left, right = (resolve(value) for value in node["Fn::Equals"])
            return bool(left == right)
        if "Condition" in node:
            return evaluate(conditions[node["Condition"]])
        raise ValueError(f"unsupported condition {node!r}")

    return evaluate(conditions[name])


def _apply_alarm(cloudwatch: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    cloudwatch.put_metric_alarm(**props)  # put is an upsert: idempotent by nature
    return props["AlarmName"], {}


def apply(
    stage: str, parameters: dict[str, Any] | None = None, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Apply the template; returns the Outputs, resolved."""
    doc = template()
    values = {name: spec.get("Default") for name, spec in doc["Parameters"].items()}
    values.update(parameters or {})
    values["Stage"] = stage
    resolve = Resolver(values)
    clients = {
        "sqs": boto3.client("sqs"),
        "dynamodb": boto3.client("dynamodb"),
        "cloudwatch": boto3.client("cloudwatch"),
        "sns": boto3.client("sns"),
    }
    appliers: dict[str, tuple[str, Callable[[Any, dict[str, Any]], tuple[str, dict[str, str]]]]] = {
        "AWS::SQS::Queue": ("sqs", _apply_queue),
        "AWS::DynamoDB::Table": ("dynamodb", _apply_table),
        "AWS::CloudWatch::Alarm": ("cloudwatch", _apply_alarm),
        "AWS::SNS::Topic": ("sns", _apply_topic),
        "AWS::SNS::Subscription": ("sns", _apply_subscription),
    }
    conditions = doc.get("Conditions", {})
    pending = {
        logical: resource
        for logical, resource in doc["Resources"].items()
        if "Condition" not in resource or condition_holds(conditions, resource["Condition"], resolve)
    }
    skipped = set(doc["Resources"]) - set(pending)
    started = time.monotonic()
    while pending:
        progressed = False
        for logical, resource in list(pending.items()):
            try:
                props = resolve(resource["Properties"])
            except KeyError:  # depends on a resource not applied yet
                continue
            service, applier = appliers[resource["Type"]]
            ref, attributes = applier(clients[service], props)
            resolve.values[logical] = ref
            for attribute, value in attributes.items():
                resolve.attributes[(logical, attribute)] = value
            del pending[logical]
            progressed = True
        if not progressed:
            raise RuntimeError(f"unresolvable resources in the template: {sorted(pending)}")
    applied = len(doc["Resources"]) - len(skipped)
    log(f"[infra] applied {applied} resources for stage {stage} in {time.monotonic() - started:.1f} s")
    return {name: resolve(output["Value"]) for name, output in doc["Outputs"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply Herald's infra template to the local cloud.")
    parser.add_argument("--stage", default="local")
    parser.add_argument("--alarm-email", default="", help="subscribe this address to the alarm topic")
    parser.add_argument("--alarm-https-url", default="", help="subscribe this HTTPS endpoint to the alarm topic")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help="queue visibility timeout in seconds (>= 6 x worker timeout)",
    )
    args = parser.parse_args(argv)
    params: dict[str, Any] = {"VisibilityTimeoutSeconds": args.visibility_timeout} if args.visibility_timeout else {}
    params.update(AlarmEmail=args.alarm_email, AlarmHttpsUrl=args.alarm_https_url)
    outputs = apply(args.stage, params)
    json.dump(outputs, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
