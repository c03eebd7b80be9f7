"""Herald's configuration, modelled once.

Every setting comes from the environment (`.chalice/config.json` sets it per stage) and is read
here and nowhere else. A missing or malformed value fails fast with a message that names it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low")
STAGES: tuple[str, ...] = ("local", "dev", "prod")
LOCAL_API_RATE_PER_MINUTE = 100_000


class ConfigError(RuntimeError):
    """A setting is missing or malformed."""


def queue_name(stage: str, priority: str) -> str:
    return f"herald-{stage}-{priority}"


def dlq_name(stage: str, priority: str) -> str:
    return f"herald-{stage}-{priority}-dlq"


def stage_from_env(env: Mapping[str, str] | None = None) -> str:
    """The stage, needed at import time by app.py to name the queues its workers listen on."""
    stage = (os.environ if env is None else env).get("HERALD_STAGE", "local")
    if stage not in STAGES:
        raise ConfigError(f"HERALD_STAGE must be one of {', '.join(STAGES)}, not {stage!r}")
    return stage


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    table_name: str
    allow_private_targets: bool
    ssm_prefix: str
    email_source: str
    max_queue_delay_s: int
    worker_timeout_s: int
    completed_retention_days: int
    dead_retention_days: int
    sms_rate_window_s: int
    api_rate_per_minute: int
    # Per-provider SMS throughput caps (messages per second, shared by every Lambda), and the
    # retry policy of alert and escalation jobs (the seed design's numbers by default).
    sms_per_second_sns: int = 20
    sms_per_second_telnyx: int = 1
    alert_max_attempts: int = 5
    alert_backoff_s: int = 2
    escalation_max_attempts: int = 3
    escalation_backoff_s: int = 5
    # How many records of one SQS batch a worker runs at once (threads: the work is I/O).
    worker_concurrency: int = 10
    # Finished alert and escalation records are kept at least this long: the monthly digest counts them.
    alert_retention_days: int = 35

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        stage = stage_from_env(env)
        return cls(
            stage=stage,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            table_name=env.get("HERALD_TABLE") or f"herald-{stage}",
            allow_private_targets=_flag(env, "HERALD_ALLOW_PRIVATE_TARGETS", stage == "local"),
            ssm_prefix=env.get("HERALD_SSM_PREFIX") or f"/herald/{stage}",
            email_source=env.get("HERALD_EMAIL_SOURCE") or "herald@example.com",
            # SQS caps DelaySeconds at 900; longer delays hop in steps of at most this.
            max_queue_delay_s=_int(env, "HERALD_MAX_QUEUE_DELAY_S", 900, 1, 900),
            worker_timeout_s=_int(env, "HERALD_WORKER_TIMEOUT_S", 60, 1, 900),
            completed_retention_days=_int(env, "HERALD_COMPLETED_RETENTION_DAYS", 7, 1, 365),
            dead_retention_days=_int(env, "HERALD_DEAD_RETENTION_DAYS", 30, 1, 365),
            sms_rate_window_s=_int(env, "HERALD_SMS_RATE_WINDOW_S", 900, 0, 86400),
            # Requests per organization per minute (chalicelib/api/ratelimit.py). The local stage
            # carries the test suites and benchmarks, so its default is far above their load.
            api_rate_per_minute=_int(
                env, "HERALD_API_RATE_PER_MINUTE", LOCAL_API_RATE_PER_MINUTE if stage == "local" else 600, 1, 1_000_000
            ),
            sms_per_second_sns=_int(env, "HERALD_SMS_PER_SECOND_SNS", 20, 1, 100_000),
            sms_per_second_telnyx=_int(env, "HERALD_SMS_PER_SECOND_TELNYX", 1, 1, 100_000),
            alert_max_attempts=_int(env, "HERALD_ALERT_MAX_ATTEMPTS", 5, 1, 10),
            alert_backoff_s=_int(env, "HERALD_ALERT_BACKOFF_S", 2, 1, 3600),
            escalation_max_attempts=_int(env, "HERALD_ESCALATION_MAX_ATTEMPTS", 3, 1, 10),
            escalation_backoff_s=_int(env, "HERALD_ESCALATION_BACKOFF_S", 5, 1, 3600),
            worker_concurrency=_int(env, "HERALD_WORKER_CONCURRENCY", 10, 1, 64),
            alert_retention_days=_int(env, "HERALD_ALERT_RETENTION_DAYS", 35, 32, 400),
        )

    def queue_name(self, priority: str) -> str:
        return queue_name(self.stage, priority)

    def sms_per_second(self, provider: str) -> int:
        """The throughput cap of an SMS provider ("sns", "telnyx"); unknown ones get SNS's."""
        return self.sms_per_second_telnyx if provider == "telnyx" else self.sms_per_second_sns

    def dlq_name(self, priority: str) -> str:
        return dlq_name(self.stage, priority)


@functools.cache
def settings() -> Settings:
    """The process's settings, read once (per Lambda container)."""
    return Settings.from_env()
