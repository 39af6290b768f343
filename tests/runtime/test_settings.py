"""Settings from the environment: defaults, conversion, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import ConfigurationError
from runtime.settings import Settings, from_env


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
