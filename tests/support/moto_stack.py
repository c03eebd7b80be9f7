"""Herald's resources inside moto, for fast unit tests: the same template, no network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto import mock_aws

from chalicelib import aws
from chalicelib import services as services_module
from chalicelib.auth import Principal, TokenStore
from chalicelib.config import PRIORITIES, Settings, settings
from infra.template import template

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "HERALD_STAGE": "local",
}
TOKENS = {
    "member-a": Principal("member", "org-a"),
    "admin-a": Principal("admin", "org-a"),
    "member-b": Principal("member", "org-b"),
    "admin-b": Principal("admin", "org-b"),
    "operator": Principal("operator", None),
}


def create_resources(stage: str = "local") -> None:
    table = template()["Resources"]["Table"]["Properties"]
    ddb = aws.client("dynamodb")
    ddb.create_table(
        TableName=f"herald-{stage}",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
    )
    sqs = aws.client("sqs")
    for priority in PRIORITIES:
        dlq = sqs.create_queue(QueueName=f"herald-{stage}-{priority}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.create_queue(
            QueueName=f"herald-{stage}-{priority}",
            Attributes={
                "VisibilityTimeout": "180",
                "RedrivePolicy": f'{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"12"}}',
            },
        )


@contextmanager
def moto_services(**overrides: Any) -> Iterator[services_module.Services]:
    """A Services graph over moto with the table, queues and the TOKENS seeded."""
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        saved.setdefault(name, os.environ.pop(name, None))
    try:
        with mock_aws():
            # Clients are stateless and moto intercepts them whenever they were built, so they
            # are kept across tests (building one costs ~0.3 s); only the service graph is new.
            services_module.use(None)
            settings.cache_clear()
            create_resources()
            svc = services_module.build(Settings.from_env({**TEST_ENV, **overrides}))
            tokens = TokenStore(svc.ddb, svc.settings.table_name)
            for token, principal in TOKENS.items():
                tokens.put(token, principal)
            for org in ("org-a", "org-b"):
                svc.orgs.put_org(org, org.upper())
            services_module.use(svc)
            yield svc
    finally:
        services_module.use(None)
        settings.cache_clear()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
