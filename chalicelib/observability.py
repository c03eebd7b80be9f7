"""Powertools Logger, Metrics and Tracer, wired once for the whole service.

Import these objects; never build another Logger. Nothing here talks to AWS at import time:
Metrics are flushed as EMF lines to stdout, the Tracer is disabled unless X-Ray is on.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "herald"
NAMESPACE = "Herald"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def mask_phone(number: str) -> str:
    """+15551234567 -> +1555***4567: enough to tell numbers apart, not to text one."""
    if len(number) <= 8:
        return number[:2] + "*" * max(len(number) - 2, 0)
    return number[:5] + "***" + number[-4:]
