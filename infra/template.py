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


# Every alarm notifies the alarm topic when it fires and when it clears; operators subscribe to
# the topic (the AlarmEmail / AlarmHttpsUrl parameters, or any subscription of their own: a
# PagerDuty or Opsgenie integration URL, a chat webhook through AWS Chatbot).
_ACTIONS: dict[str, Any] = {"AlarmActions": [{"Ref": "AlarmTopic"}], "OKActions": [{"Ref": "AlarmTopic"}]}
# The functions Chalice deploys (`{app}-{stage}[-{name}]`) whose errors and throttles page.
FUNCTIONS = ("worker_critical", "worker_high", "worker_normal", "worker_low", "redrive_worker")
FUNCTION_ALARMS = {
    "Errors": "invocations fail (crashes, timeouts); their batches come back after the visibility timeout.",
    "Throttles": "invocations are throttled; raise its reserved concurrency or the account's limit.",
}
# Template parameter -> the protocol of the alarm topic's subscription it creates when not empty.
SUBSCRIPTIONS = {"AlarmEmail": "email", "AlarmHttpsUrl": "https"}
API_NAME = "herald"  # Chalice's REST API is named after the app
API_STAGE = "api"  # Chalice's default API Gateway stage


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
                **_ACTIONS,
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
                **_ACTIONS,
            },
        },
    }


def _alarm(name: str, description: str, **metric: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": {"Fn::Sub": f"herald-${{Stage}}-{name}"},
            "AlarmDescription": description,
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            **metric,
            **_ACTIONS,
        },
    }


def _paging() -> dict[str, Any]:
    """The alarm topic, its optional subscriptions, and the alarms on functions and the API."""
    resources: dict[str, Any] = {
        "AlarmTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": {"Fn::Sub": "herald-${Stage}-alarms"}},
        },
        "Api5xxAlarm": _alarm(
            "api-5xx",
            "The API answers 5xx: look at the API function's logs.",
            Namespace="AWS/ApiGateway",
            MetricName="5XXError",
            Dimensions=[{"Name": "ApiName", "Value": API_NAME}, {"Name": "Stage", "Value": API_STAGE}],
        ),
    }
    for parameter, protocol in SUBSCRIPTIONS.items():
        resources[f"{parameter}Subscription"] = {
            "Type": "AWS::SNS::Subscription",
            "Condition": f"Has{parameter}",
            "Properties": {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": protocol, "Endpoint": {"Ref": parameter}},
        }
    for function in FUNCTIONS:
        logical = "".join(part.capitalize() for part in function.split("_"))
        dimensions = [{"Name": "FunctionName", "Value": {"Fn::Sub": f"herald-${{Stage}}-{function}"}}]
        for metric, what in FUNCTION_ALARMS.items():
            resources[f"{logical}{metric}Alarm"] = _alarm(
                f"{function}-{metric.lower()}",
                f"{function}: {what}",
                Namespace="AWS/Lambda",
                MetricName=metric,
                Dimensions=dimensions,
            )
    return resources


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
    resources.update(_paging())
    outputs = {"TableName": {"Value": {"Ref": "Table"}}, "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}}}
    for priority in PRIORITIES:
        outputs[_logical(priority, "QueueUrl")] = {"Value": {"Ref": _logical(priority, "Queue")}}
        outputs[_logical(priority, "DeadLetterQueueUrl")] = {"Value": {"Ref": _logical(priority, "DeadLetterQueue")}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Herald: job queues (one per priority) with dead-letter queues, the table, alarms that page.",
        "Parameters": {
            "Stage": {"Type": "String", "AllowedValues": ["local", "dev", "prod"]},
            "VisibilityTimeoutSeconds": {
                "Type": "Number",
                "Default": 180,
                "Description": "At least 6 x the worker functions' timeout (AWS's rule for SQS event sources).",
            },
            "OldestMessageAlarmSeconds": {"Type": "Number", "Default": 600},
            "AlarmEmail": {
                "Type": "String",
                "Default": "",
                "Description": "An address the alarm topic emails (it confirms the subscription); empty: none.",
            },
            "AlarmHttpsUrl": {
                "Type": "String",
                "Default": "",
                "Description": "An HTTPS endpoint the alarm topic posts to (PagerDuty, Opsgenie); empty: none.",
            },
        },
        "Conditions": {
            f"Has{parameter}": {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]} for parameter in SUBSCRIPTIONS
        },
        "Resources": resources,
        "Outputs": outputs,
    }


if __name__ == "__main__":
    json.dump(template(), sys.stdout, indent=2)
    sys.stdout.write("\n")
