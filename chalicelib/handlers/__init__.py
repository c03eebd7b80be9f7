"""Job handlers by type: each takes a Job and returns its result, or raises a JobError."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.handlers.digest import digest_email_handler, digest_fanout_handler
from chalicelib.handlers.notify import email_handler, webhook_handler
from chalicelib.handlers.sms import escalation_handler, sms_handler

if TYPE_CHECKING:
    from chalicelib.jobs.worker import Handler
    from chalicelib.services import Services


def build_handlers(svc: Services) -> dict[str, Handler]:
    handlers: dict[str, Handler] = {
        "webhook": webhook_handler(svc),
        "email": email_handler(svc),
        "sms": sms_handler(svc),
        "escalation": escalation_handler(svc),
        "digest": digest_fanout_handler(svc),
        "digest_email": digest_email_handler(svc),
    }
    if svc.settings.stage == "local":
        # Fault injection for tests/reliability: never registered on dev or prod.
        from chalicelib.handlers.chaos import chaos_handler

        handlers["chaos"] = chaos_handler(svc)
    return handlers
