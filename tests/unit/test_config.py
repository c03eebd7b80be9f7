"""Settings from the environment: defaults, and a clear error for a bad value (never a guess)."""

from __future__ import annotations

import pytest

from chalicelib.config import ConfigError, Settings


def test_defaults_for_the_local_stage():
    settings = Settings.from_env({})
    assert settings.stage == "local" and settings.table_name == "herald-local"
    assert settings.worker_concurrency == 10 and settings.max_queue_delay_s == 900
    assert settings.allow_private_targets is True


def test_values_are_read():
    settings = Settings.from_env(
        {"HERALD_STAGE": "prod", "HERALD_WORKER_CONCURRENCY": "1", "HERALD_ALLOW_PRIVATE_TARGETS": "false"}
    )
    assert settings.table_name == "herald-prod" and settings.worker_concurrency == 1
    assert settings.allow_private_targets is False and settings.api_rate_per_minute == 600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HERALD_WORKER_CONCURRENCY": "0"}, "HERALD_WORKER_CONCURRENCY must be between 1 and 64, not 0"),
        ({"HERALD_WORKER_CONCURRENCY": "ten"}, "HERALD_WORKER_CONCURRENCY must be an integer, not 'ten'"),
        ({"HERALD_MAX_QUEUE_DELAY_S": "901"}, "HERALD_MAX_QUEUE_DELAY_S must be between 1 and 900, not 901"),
        ({"HERALD_ALLOW_PRIVATE_TARGETS": "maybe"}, "HERALD_ALLOW_PRIVATE_TARGETS must be true or false"),
        ({"HERALD_STAGE": "staging"}, "HERALD_STAGE must be one of"),
    ],
)
def test_a_bad_value_is_a_clear_error(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)
