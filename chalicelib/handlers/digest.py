"""The digest job handlers: "digest" (the fan-out, see digests/runner.py) and "digest_email".

A "digest_email" job is one digest: its id ``digest:{kind}:{period}:{user_id}`` exists once per
period, and the worker runs it to completion at most once. The send itself goes through the
delivery log (``Courier``): an attempt that died after SES took the email but before the job was
completed finds the ``sent`` record on its retry and completes with it, instead of sending a
second email. The recipient is read again at send time: one removed, or unsubscribed from the
kind, since the fan-out gets nothing (the job completes as skipped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib import aws
from chalicelib.digests.content import render
from chalicelib.digests.runner import (
    DigestFanout,
    ProgressStore,
    summary_from_payload,
)
from chalicelib.handlers.sms import Courier, lazy, mask_email
from chalicelib.jobs.worker import invocation_time_left
from chalicelib.observability import logger
from chalicelib.providers.email import EmailMessage, SesEmailProvider
from chalicelib.recipients import RecipientStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalicelib.jobs.model import Job
    from chalicelib.services import Services


class DigestEmailHandler:
    def __init__(
        self,
        courier: Courier,
        recipients: RecipientStore,
        email: Callable[[], SesEmailProvider],
        email_source: str,
    ) -> None:
        self._courier = courier
        self._recipients = recipients
        self._email = email
        self._email_source = email_source

    def __call__(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        outline = {"kind": payload["kind"], "period": payload["period"], "user_id": payload["user_id"]}
        log = self._courier.log(job)
        sent = [r for r in log if r.get("channel") == "email" and r.get("status") == "sent"]
        if sent:
            logger.info("digest already sent by an earlier attempt: not sent again")
            return {**outline, **_sent(sent[-1]), "replayed": True}
        recipient = self._recipients.get(job.org_id, str(payload["user_id"]))
        if recipient is None:
            return {**outline, "skipped": True, "reason": "recipient_removed"}
        if payload["kind"] not in recipient.digests:
            return {**outline, "skipped": True, "reason": "unsubscribed"}
        summary = summary_from_payload(job.org_id, payload)
        subject, text, html = render(summary, recipient.email, tz=str(payload["timezone"]))
        provider = self._email()
        message = EmailMessage(to=[recipient.email], subject=subject, text=text, html=html, source=self._email_source)
        record = self._courier.deliver(
            job,
            log,
            "email",
            provider="ses",
            to=mask_email(recipient.email),
            user_id=recipient.user_id,
            send=lambda: provider.send(message, idempotency_key=job.job_id),
        )
        counts = {name: value for name, value in payload["summary"].items() if name != "by_alert_type"}
        return {**outline, **_sent(record), "counts": counts}


def _sent(record: dict[str, Any]) -> dict[str, Any]:
    return {"provider": "ses", "message_id": record.get("provider_message_id"), "to": record.get("to")}


def digest_fanout_handler(svc: Services) -> DigestFanout:
    table = svc.settings.table_name
    return DigestFanout(
        svc.store,
        RecipientStore(svc.ddb, table),
        svc.jobs,
        svc.queue,
        svc.sqs,
        ProgressStore(svc.ddb, table),
        svc.orgs.org_ids,
        time_left=invocation_time_left,
    )


def digest_email_handler(svc: Services) -> DigestEmailHandler:
    return DigestEmailHandler(
        Courier(svc.store),
        RecipientStore(svc.ddb, svc.settings.table_name),
        lazy(lambda: SesEmailProvider(aws.client("ses"), svc.settings.email_source)),
        svc.settings.email_source,
    )
