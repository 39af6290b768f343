"""Settings from the environment: defaults, conversion, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import ConfigurationError
from runtime.settings import Settings, from_env
from streams.connection import RedisSettings


def test_defaults() -> None:
    assert from_env({}) == Settings()


@given(grace=st.floats(0, 1e6), block=st.integers(1, 4999))
def test_numbers_are_parsed_from_strings(grace: float, block: int) -> None:
    s = from_env({"SLUICE_GRACE_S": repr(grace), "SLUICE_BLOCK_MS": str(block)})
    assert (s.grace_s, s.block_ms) == (grace, block)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SLUICE_GRACE_S": "soon"}, "SLUICE_GRACE_S='soon': Expected `float`"),
        ({"SLUICE_GRACE": "1"}, "unknown setting SLUICE_GRACE"),
        ({"REDIS_URL": "http://x"}, "must start with redis://"),
        ({"SLUICE_BLOCK_MS": "5000"}, "below the socket timeout"),
        ({"SLUICE_LOG_LEVEL": "LOUD"}, "SLUICE_LOG_LEVEL='LOUD'"),
    ],
)
def test_bad_values_raise_one_line_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        from_env(environ)
    assert "\n" not in str(caught.value)


def test_the_cli_exits_with_the_error_not_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime", "worker"],
        env={"SLUICE_GRACE_S": "soon", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "sluice: SLUICE_GRACE_S='soon': Expected `float`, got `str`"


def test_redacted_url_hides_the_password() -> None:
    s = from_env({"REDIS_URL": "rediss://user:secret@host:6380/0"})
    assert s.redis.redacted_url() == "rediss://user:***@host:6380/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&password=s3cret&x=1", "redis://h/0?db=1&password=***&x=1"),
        ("redis://u:s3cret@h/0?password=s3cret", "redis://u:***@h/0?password=***"),
        ("unix:///run/r.sock?password=s%33cret&db=0", "unix:///run/r.sock?password=***&db=0"),
        ("redis://h/0?PASSWORD=s3cret", "redis://h/0?PASSWORD=***"),
    ],
)
def test_redacted_url_hides_a_password_given_in_the_query(url: str, shown: str) -> None:
    assert RedisSettings(url=url).redacted_url() == shown
    with pytest.raises(ConfigurationError) as refused:
        RedisSettings(url="http" + url.partition(":")[1] + url.partition(":")[2])
    assert "s3cret" not in str(refused.value)


def test_rates_are_name_value_pairs() -> None:
    assert from_env({"SLUICE_RATES": " sms.send=20, email.send=0.5 ,"}).rates == {
        "sms.send": 20.0,
        "email.send": 0.5,
    }
    assert from_env({"SLUICE_RATES": ""}).rates == {}
    with pytest.raises(
        ConfigurationError, match=re.escape("SLUICE_RATES='sms.send': expected name=value")
    ):
        from_env({"SLUICE_RATES": "sms.send"})
    with pytest.raises(ConfigurationError, match=re.escape("SLUICE_RATES='sms.send=fast'")):
        from_env({"SLUICE_RATES": "sms.send=fast"})
