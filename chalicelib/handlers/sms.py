"""The "sms" (alert) and "escalation" job handlers.

An SMS alert, in order:
1. **effectively once**: if the job's delivery log already holds a `sent` SMS (an earlier attempt
   sent it, then crashed or timed out before the job was completed), complete with it: no resend;
2. **quiet hours**: an `info` alert inside the recipient's quiet hours is deferred to the end of
   the window (`Deferred`: back to `scheduled`, no attempt counted); warning and critical go;
3. **rate limit**: one SMS per (org, user, alert type) per window; a suppressed alert completes
   with `{"suppressed": true, "reason": "rate_limited", ...}`;
4. **throughput cap**: one token from the provider's shared bucket, or deferred for the wait;
5. **send**, recorded in the delivery log before (`pending`) and after (`sent` with the provider's
   message id, or `failed` with the error code). Numbers are masked in the log and in log lines.

A `pending` record without a `sent` one means an attempt died mid-send: we cannot know whether
the provider took it, and an alert that does not go out is worse than one that goes out twice,
so the retry sends again (Telnyx de-duplicates it: the idempotency key is the same on every
attempt of a job); the new record names the unconfirmed one.

An escalation skips quiet hours and the rate limit (it always goes), is skipped when its incident
was acknowledged after it was created, and notifies its contact by SMS and/or email, each channel
effectively once: a retry after one channel went out sends only the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib import aws
from chalicelib.alerts.incidents import IncidentIndex
from chalicelib.alerts.limits import AlertRateLimit, TokenBucket, reserve_for
from chalicelib.alerts.quiet_hours import RecipientQuietHours
from chalicelib.clock import Clock, iso, parse_iso, utcnow
from chalicelib.config import Settings
from chalicelib.errors import Deferred, FatalError, JobError
from chalicelib.jobs.store import JobStore
from chalicelib.observability import logger, mask_phone
from chalicelib.providers.email import EmailMessage, SesEmailProvider
from chalicelib.providers.sms import SmsProvider, build_sms_provider

if TYPE_CHECKING:
    from chalicelib.jobs.model import Job
    from chalicelib.services import Services

T = TypeVar("T")

# Urgent work may take a provider's last tokens; the rest leaves a reserve for it.
URGENT = frozenset({"critical", "high"})
# The worker may start a job up to 1 s before its run_at: a deferred alert this close to the end
# of its window is sent, not deferred again for a second.
WINDOW_END_TOLERANCE_S = 2.0


def mask_email(address: str) -> str:
    """ops@example.com -> o**@example.com"""
    local, _, domain = address.partition("@")
    return (local[:1] + "*" * min(max(len(local) - 1, 2), 8)) + "@" + domain


def lazy(factory: Callable[[], T]) -> Callable[[], T]:
    """Build on first use, once per container; a failed build is tried again next time."""
    built: list[T] = []
    lock = threading.Lock()

    def get() -> T:
        with lock:
            if not built:
                built.append(factory())
            return built[0]

    return get


def _latest(log: list[dict[str, Any]], channel: str, status: str) -> dict[str, Any] | None:
    found = [r for r in log if r.get("channel") == channel and r.get("status") == status]
    return max(found, key=lambda r: int(r.get("attempt", 0))) if found else None


class Courier:
    """Sends one message per job and channel through the delivery log (see the module doc)."""

    def __init__(self, store: JobStore, clock: Clock = utcnow) -> None:
        self._store = store
        self._clock = clock

    def log(self, job: Job) -> list[dict[str, Any]]:
        current = self._store.get(job.org_id, job.job_id)
        return current.deliveries if current is not None else []

    def deliver(
        self,
        job: Job,
        log: list[dict[str, Any]],
        channel: str,
        *,
        provider: str,
        to: str,
        user_id: str | None,
        send: Callable[[], str],
    ) -> dict[str, Any]:
        """Record `pending`, call `send` (-> the provider's message id), record the outcome."""
        key = f"{channel}:{job.attempts}"
        record: dict[str, Any] = {
            "attempt_key": key,
            "channel": channel,
            "attempt": job.attempts,
            "job_id": job.job_id,
            "org_id": job.org_id,
            "user_id": user_id,
            "to": to,
            "provider": provider,
            "provider_message_id": None,
            "status": "pending",
            "error_code": None,
            "at": iso(self._clock()),
        }
        unconfirmed = [r["attempt_key"] for r in log if r.get("channel") == channel and r.get("status") == "pending"]
        if unconfirmed:
            record["after_unconfirmed"] = unconfirmed
            logger.warning("an earlier send was never confirmed: sending again", extra={"unconfirmed": unconfirmed})
        self._store.add_delivery(job, key, record)
        try:
            message_id = send()
        except Exception as err:
            code = err.code if isinstance(err, JobError) else "internal_error"
            retryable = err.retryable if isinstance(err, JobError) else True
            self._store.add_delivery(
                job,
                key,
                {**record, "status": "failed", "error_code": code, "retryable": retryable, "at": iso(self._clock())},
            )
            raise
        sent = {**record, "status": "sent", "provider_message_id": message_id, "at": iso(self._clock())}
        self._store.add_delivery(job, key, sent)
        return sent


class SmsChannel:
    """One SMS through the configured provider, within its shared throughput cap."""

    def __init__(
        self,
        courier: Courier,
        bucket: TokenBucket,
        provider: Callable[[], SmsProvider],
        settings: Settings,
        clock: Clock = utcnow,
    ) -> None:
        self._courier = courier
        self._bucket = bucket
        self._provider = provider
        self._settings = settings
        self._clock = clock

    def send(self, job: Job, log: list[dict[str, Any]], to: str, text: str, user_id: str | None) -> dict[str, Any]:
        provider = self._provider()
        rate = self._settings.sms_per_second(provider.name)
        reserve = 0 if job.priority in URGENT else reserve_for(rate)
        wait = self._bucket.take(f"sms:{provider.name}", rate, rate, reserve)
        if wait is not None:
            raise Deferred(self._clock() + timedelta(seconds=wait), "sms_throughput_cap")
        return self._courier.deliver(
            job,
            log,
            "sms",
            provider=provider.name,
            to=mask_phone(to),
            user_id=user_id,
            # The same key on every attempt: a provider that de-duplicates (Telnyx) sends once.
            send=lambda: provider.send(to, text, idempotency_key=f"{job.job_id}:sms").message_id,
        )


def _sent_summary(record: dict[str, Any], replayed: bool) -> dict[str, Any]:
    summary = {
        "provider": record.get("provider"),
        "message_id": record.get("provider_message_id"),
        "to": record.get("to"),
        "delivery": record.get("attempt_key"),
    }
    if replayed:
        summary["replayed"] = True  # sent by an earlier attempt: found in the log, not sent again
    return summary


class SmsAlertHandler:
    """The "sms" job: an alert (POST /v1/alerts/{id}/notify) or a generic SMS (POST /v1/jobs)."""

    def __init__(
        self,
        courier: Courier,
        sms: SmsChannel,
        limit: AlertRateLimit,
        quiet_hours: RecipientQuietHours,
        clock: Clock = utcnow,
    ) -> None:
        self._courier = courier
        self._sms = sms
        self._limit = limit
        self._quiet_hours = quiet_hours
        self._clock = clock

    def __call__(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        log = self._courier.log(job)
        done = _latest(log, "sms", "sent")
        if done is not None:
            logger.info("SMS already sent by an earlier attempt: not sent again")
            return _sent_summary(done, replayed=True)
        # An alert names its user and alert type; a generic SMS (POST /v1/jobs) does not.
        user_id, alert_type = str(payload.get("user_id") or ""), str(payload.get("alert_type") or "")
        is_alert = bool(user_id and alert_type)
        decision = self._quiet_hours_decision(job) if is_alert else None
        result: dict[str, Any] = {"quiet_hours": decision} if decision else {}
        if is_alert and not self._claim(job, user_id, alert_type, result):
            return result
        try:
            sent = self._sms.send(job, log, payload["phone_number"], payload["message"], user_id or None)
        except Deferred:
            raise
        except Exception as err:
            # Nothing went out: if no retry follows, free the window for the user's next alert.
            gives_up = not getattr(err, "retryable", True) or job.attempts >= job.max_attempts
            if is_alert and gives_up:
                self._limit.release(job.org_id, user_id, alert_type, job.job_id)
            raise
        return {**_sent_summary(sent, replayed=False), **result}

    def _claim(self, job: Job, user_id: str, alert_type: str, result: dict[str, Any]) -> bool:
        claim = self._limit.claim(job.org_id, user_id, alert_type, job.job_id)
        if claim.allowed:
            return True
        result.update(
            suppressed=True,
            reason="rate_limited",
            message=f"An SMS for this user and alert type went out less than {self._limit.window_s} s ago.",
            window_s=self._limit.window_s,
            suppressed_by=claim.holder,
            window_ends=iso(claim.until),
        )
        logger.info(
            "SMS suppressed by the rate limit",
            extra={
                "user_id": user_id,
                "alert_type": alert_type,
                "suppressed_by": claim.holder,
                "to": mask_phone(str(job.payload.get("phone_number", ""))),
            },
        )
        return False

    def _quiet_hours_decision(self, job: Job) -> dict[str, Any] | None:
        """None without quiet hours; else the decision, recorded in the result. Raises Deferred."""
        now = self._clock()
        prior = job.meta.get("deferral")
        if not isinstance(prior, dict) or prior.get("reason") != "quiet_hours":
            prior = None
        if prior is not None and now >= parse_iso(prior["until"]) - timedelta(seconds=WINDOW_END_TOLERANCE_S):
            return {"decision": "deferred", **prior}  # the window it waited for is over: send
        window = self._quiet_hours.get(job.org_id, str(job.payload["user_id"]))
        if window is None:
            return None
        ends = window.ends_after(now)
        if ends is None:
            return {"decision": "outside", **window.describe()}
        severity = job.payload.get("severity")
        if severity != "info":
            return {"decision": "bypassed", "severity": severity, **window.describe()}
        deferral = {"reason": "quiet_hours", "until": iso(ends), "decided_at": iso(now), **window.describe()}
        logger.info("info alert inside quiet hours: deferred", extra={"until": iso(ends)})
        raise Deferred(ends, "quiet_hours", deferral)


class EscalationHandler:
    """The "escalation" job: notify the contact by SMS and/or email, unless acknowledged."""

    def __init__(
        self,
        courier: Courier,
        sms: SmsChannel,
        email: Callable[[], SesEmailProvider],
        incidents: IncidentIndex,
        email_source: str,
    ) -> None:
        self._courier = courier
        self._sms = sms
        self._email = email
        self._incidents = incidents
        self._email_source = email_source

    def __call__(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        incident_id = str(payload["incident_id"])
        acknowledged = self._incidents.acknowledged_at(job.org_id, incident_id)
        if acknowledged is not None and acknowledged >= job.created_at:
            logger.info("incident acknowledged: escalation skipped")
            return {"skipped": True, "reason": "incident_acknowledged", "acknowledged_at": iso(acknowledged)}
        contact = payload.get("contact") or {}
        log = self._courier.log(job)
        sent: dict[str, Any] = {}
        failed: dict[str, JobError] = {}
        for channel, address in (("sms", contact.get("phone_number")), ("email", contact.get("email"))):
            if not address:
                continue
            done = _latest(log, channel, "sent")
            if done is not None:
                sent[channel] = _sent_summary(done, replayed=True)
                continue
            try:
                sent[channel] = _sent_summary(self._send(job, log, channel, address), replayed=False)
            except JobError as err:
                failed[channel] = err
        result: dict[str, Any] = {
            "incident_id": incident_id,
            "level": payload.get("level"),
            "repeat": payload.get("repeat"),
            "channels": sent,
        }
        retryable = [err for err in failed.values() if err.retryable]
        if retryable and job.attempts < job.max_attempts:
            raise retryable[0]
        if not sent:
            raise next(iter(failed.values()), FatalError("no_contact", "The escalation has no contact to notify."))
        if failed:
            # One channel reached the contact; the other's error is kept, not retried forever.
            result["failed"] = {channel: err.as_dict() for channel, err in failed.items()}
        return result

    def _send(self, job: Job, log: list[dict[str, Any]], channel: str, address: str) -> dict[str, Any]:
        text = str(job.payload["message"])
        if channel == "sms":
            return self._sms.send(job, log, address, text, None)
        provider = self._email()
        message = EmailMessage(
            to=[address],
            subject=f"Escalation level {job.payload.get('level')}: incident {job.payload['incident_id']}",
            text=text,
            source=self._email_source,
        )
        return self._courier.deliver(
            job,
            log,
            "email",
            provider="ses",
            to=mask_email(address),
            user_id=None,
            send=lambda: provider.send(message, idempotency_key=f"{job.job_id}:email"),
        )


def _sms_channel(svc: Services, courier: Courier) -> SmsChannel:
    provider = lazy(
        lambda: build_sms_provider(lambda: aws.client("sns"), lambda: aws.client("ssm"), svc.settings.ssm_prefix)
    )
    return SmsChannel(courier, TokenBucket(svc.ddb, svc.settings.table_name), provider, svc.settings)


def sms_handler(svc: Services) -> SmsAlertHandler:
    courier = Courier(svc.store)
    return SmsAlertHandler(
        courier,
        _sms_channel(svc, courier),
        AlertRateLimit(svc.ddb, svc.settings.table_name, svc.settings.sms_rate_window_s),
        RecipientQuietHours(svc.ddb, svc.settings.table_name),
    )


def escalation_handler(svc: Services) -> EscalationHandler:
    courier = Courier(svc.store)
    return EscalationHandler(
        courier,
        _sms_channel(svc, courier),
        lazy(lambda: SesEmailProvider(aws.client("ses"), svc.settings.email_source)),
        IncidentIndex(svc.ddb, svc.settings.table_name),
        svc.settings.email_source,
    )
