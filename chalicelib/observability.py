"""Powertools Logger, Metrics and Tracer, wired once for the whole service.

Import these objects; never build another Logger. Nothing here talks to AWS at import time:
Metrics are flushed as EMF lines to stdout, and the Tracer is built on first use only, because
building it imports the X-Ray SDK, whose recorder creates an AWS client (cold-start cost).
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "herald"
NAMESPACE = "Herald"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


@functools.cache
def tracer() -> Tracer:
    return Tracer(service=SERVICE)


def mask_phone(number: str) -> str:
    """+15551234567 -> +1555***4567: enough to tell numbers apart, not to text one."""
    if len(number) <= 8:
        return number[:2] + "*" * max(len(number) - 2, 0)
    return number[:5] + "***" + number[-4:]
