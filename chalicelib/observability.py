"""Powertools Logger and Metrics, wired once for the whole service.

Import these objects; never build another Logger. Nothing here talks to AWS at import time:
Metrics are flushed as EMF lines to stdout. There is no Tracer: Powertools' Tracer needs the X-Ray
SDK, which brings its own botocore into the package, where it shadows the runtime's precompiled
one and costs every cold start hundreds of milliseconds (docs/benchmarks.md, benchmark 4). Turn on
Lambda's active tracing for the functions instead; to trace inside them, add
`aws-lambda-powertools[tracer]` to requirements.txt and build the Tracer lazily, on first use.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "herald"
NAMESPACE = "Herald"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def mask_phone(number: str) -> str:
    """+15551234567 -> +1555***4567: enough to tell numbers apart, not to text one."""
    if len(number) <= 8:
        return number[:2] + "*" * max(len(number) - 2, 0)
    return number[:5] + "***" + number[-4:]
