"""The CloudFormation template for Herald's queues, dead-letter queues, table and alarms.

The template is data (a dict, written out as JSON by `make package`); this module only spares
us writing four near-identical queue blocks by hand. The same template deploys to real AWS with
CloudFormation, and `infra/apply.py` applies it to the local cloud through boto3.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PRIORITIES = ("critical", "high", "normal", "low")
# A job may ask for up to 10 attempts; two more receives absorb worker crashes/timeouts before
# SQS itself moves a poison message to the DLQ.
MAX_RECEIVE_COUNT = 12
RETENTION_S = 14 * 24 * 3600


def _logical(priority: str, suffix: str) -> str:
    return f"{priority.capitalize()}{suffix}"


def _queue_pair(priority: str) -> dict[str, Any]:
    dlq = _logical(priority, "DeadLetterQueue")
    queue = _logical(priority, "Queue")
    return {
        dlq: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": {"Fn::Sub": f"herald-${{Stage}}-{priority}-dlq"},
                "MessageRetentionPeriod": RETENTION_S,
                "SqsManagedSseEnabled": True,
            },
        },
        queue: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": {"Fn::Sub": f"herald-${{Stage}}-{priority}"},
                # AWS's rule for Lambda event sources: visibility >= 6 x the function timeout.
                "VisibilityTimeout": {"Fn::Sub": "${VisibilityTimeoutSeconds}"},
                "MessageRetentionPeriod": RETENTION_S,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                    "maxReceiveCount": MAX_RECEIVE_COUNT,
                },
            },
        },
        _logical(priority, "DeadLettersAlarm"): {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": {"Fn::Sub": f"herald-${{Stage}}-{priority}-dead-letters"},
                "AlarmDescription": f"Jobs are dying on the {priority} queue: peek and redrive them.",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}],
                "Statistic": "Maximum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        },
        _logical(priority, "OldestMessageAlarm"): {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": {"Fn::Sub": f"herald-${{Stage}}-{priority}-oldest-message"},
                "AlarmDescription": f"Work waits too long on the {priority} queue: workers are behind.",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}],
                "Statistic": "Maximum",
                "Period": 60,
                "EvaluationPeriods": 5,
                "Threshold": {"Ref": "OldestMessageAlarmSeconds"},
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        },
    }


def _table() -> dict[str, Any]:
    key = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    return {
        "Table": {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": {"Fn::Sub": "herald-${Stage}"},
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1pk", "gsi1sk")
                ],
                "KeySchema": key,
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "gsi1",
                        "KeySchema": [
                            {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                            {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
            },
        }
    }


def template() -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for priority in PRIORITIES:
        resources.update(_queue_pair(priority))
    resources.update(_table())
    outputs = {"TableName": {"Value": {"Ref": "Table"}}}
    for priority in PRIORITIES:
        outputs[_logical(priority, "QueueUrl")] = {"Value": {"Ref": _logical(priority, "Queue")}}
        outputs[_logical(priority, "DeadLetterQueueUrl")] = {"Value": {"Ref": _logical(priority, "DeadLetterQueue")}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Herald: job queues (one per priority) with dead-letter queues, the table, alarms.",
        "Parameters": {
            "Stage": {"Type": "String", "AllowedValues": ["local", "dev", "prod"]},
            "VisibilityTimeoutSeconds": {
                "Type": "Number",
                "Default": 180,
                "Description": "At least 6 x the worker functions' timeout (AWS's rule for SQS event sources).",
            },
            "OldestMessageAlarmSeconds": {"Type": "Number", "Default": 600},
        },
        "Resources": resources,
        "Outputs": outputs,
    }


if __name__ == "__main__":
    json.dump(template(), sys.stdout, indent=2)
    sys.stdout.write("\n")
