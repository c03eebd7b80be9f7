"""Handlers for the generic notification jobs: webhook and email."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib import aws
from chalicelib.providers.email import EmailMessage, SesEmailProvider
from chalicelib.providers.webhook import WebhookDeliverer

if TYPE_CHECKING:
    from chalicelib.jobs.model import Job
    from chalicelib.jobs.worker import Handler
    from chalicelib.services import Services


def webhook_handler(svc: Services) -> Handler:
    deliverer = WebhookDeliverer(allow_private=svc.settings.allow_private_targets)

    def run(job: Job) -> dict[str, Any]:
        payload = job.payload
        # The webhook-id is the job id on every attempt, so receivers can drop a repeat.
        return deliverer.deliver(
            payload["url"],
            payload["body"],
            payload.get("headers"),
            msg_id=job.job_id,
            secret=svc.orgs.webhook_secret(job.org_id, cached=True),
        )

    return run


def email_handler(svc: Services) -> Handler:
    provider = SesEmailProvider(aws.client("ses"), svc.settings.email_source)

    def run(job: Job) -> dict[str, Any]:
        payload = job.payload
        to = payload["to"] if isinstance(payload["to"], list) else [payload["to"]]
        message = EmailMessage(
            to=to,
            subject=payload["subject"],
            text=payload["text"],
            html=payload.get("html"),
            source=svc.settings.email_source,
        )
        return {"message_id": provider.send(message, idempotency_key=job.job_id)}

    return run
