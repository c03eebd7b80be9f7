"""`make package`'s patches to Chalice's SAM template, on a template shaped like Chalice's.

The whole build (chalice package + cfn-lint) runs in tests/integration/test_package.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.package import NOT_FOUND_BODY, patch_sam


def chalice_like() -> dict[str, Any]:
    sqs_event = {"Type": "SQS", "Properties": {"Queue": "arn:aws:sqs:us-east-1:1:herald-prod-low", "BatchSize": 10}}
    return {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "WorkerLow": {"Type": "AWS::Serverless::Function", "Properties": {"Events": {"Low": sqs_event}}},
            "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {}},
            "RestAPI": {"Type": "AWS::Serverless::Api", "Properties": {"DefinitionBody": {"swagger": "2.0"}}},
        },
    }


def test_every_sqs_event_source_reports_batch_item_failures():
    doc = patch_sam(chalice_like())
    event = doc["Resources"]["WorkerLow"]["Properties"]["Events"]["Low"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and event["BatchSize"] == 10


def test_unknown_routes_answer_the_contracts_404():
    doc = patch_sam(chalice_like())
    responses = [r for r in doc["Resources"].values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"]
    kinds = {r["Properties"]["ResponseType"] for r in responses}
    assert "MISSING_AUTHENTICATION_TOKEN" in kinds
    for response in responses:
        props = response["Properties"]
        assert props["StatusCode"] == "404" and props["RestApiId"] == {"Ref": "RestAPI"}
        body = json.loads(props["ResponseTemplates"]["application/json"])
        assert body == {"error": {"code": "not_found", "message": "No such route."}}
    in_definition = doc["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]
    assert in_definition["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"] == NOT_FOUND_BODY


def test_a_template_that_is_not_chalices_is_refused():
    with pytest.raises(SystemExit):
        patch_sam({"Resources": {}})
