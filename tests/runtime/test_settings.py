"""Settings from the environment: defaults, conversion, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.runtime.errors import ConfigurationError
from sluice.runtime.settings import Settings, from_env
from sluice.streams.connection import RedisSettings


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
        [sys.executable, "-m", "sluice", "worker"],
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


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({"REDIS_HOST": "cache.internal"}, "redis://cache.internal:6379/0"),
        (
            {"REDIS_HOST": "h", "REDIS_PORT": "6380", "REDIS_DB": "2", "REDIS_TLS": "true"},
            "rediss://h:6380/2",
        ),
        (
            {"REDIS_HOST": "h", "REDIS_USER": "app", "REDIS_PASSWORD": "p@ss:w/rd"},
            "redis://app:p%40ss%3Aw%2Frd@h:6379/0",
        ),
        # Only URLs are built here: no server is reached, on 6379 or any port.
        ({"REDIS_PASSWORD": "pw"}, "redis://:pw@127.0.0.1:6379/0"),
        ({"REDIS_HOST": "::1"}, "redis://[::1]:6379/0"),
    ],
)
def test_the_redis_url_is_built_from_its_parts(environ: dict[str, str], url: str) -> None:
    redis = from_env(environ).redis
    assert (redis.url, redis.username, redis.password) == (url, None, None)


def test_parts_that_agree_with_redis_url_are_accepted() -> None:
    environ = {
        "REDIS_URL": "rediss://app:pw@Cache:6380/3",
        "REDIS_HOST": "cache",
        "REDIS_PORT": "6380",
        "REDIS_DB": "3",
        "REDIS_TLS": "1",
        "REDIS_USER": "app",
        "REDIS_PASSWORD": "pw",
    }
    assert from_env(environ).redis.url == environ["REDIS_URL"]
    # Credentials the URL does not hold are the fields, as REDIS_USERNAME always was.
    redis = from_env({"REDIS_URL": "redis://h/0", "REDIS_USER": "u", "REDIS_PASSWORD": "p"}).redis
    assert (redis.username, redis.password) == ("u", "p")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"REDIS_URL": "redis://a:6379/0", "REDIS_HOST": "b", "REDIS_PORT": "7000"},
            "REDIS_URL and REDIS_HOST, REDIS_PORT disagree; set REDIS_URL or the parts, not both",
        ),
        ({"REDIS_URL": "redis://a/1", "REDIS_DB": "2"}, "REDIS_URL and REDIS_DB disagree"),
        ({"REDIS_URL": "redis://a/1", "REDIS_TLS": "true"}, "REDIS_URL and REDIS_TLS disagree"),
        ({"REDIS_URL": "unix:///tmp/r.sock", "REDIS_HOST": "a"}, "REDIS_URL and REDIS_HOST"),
        (
            {"REDIS_URL": "redis://u:secret@a/0", "REDIS_PASSWORD": "other"},
            "REDIS_URL and REDIS_PASSWORD disagree",
        ),
        ({"REDIS_URL": "redis://u@a/0", "REDIS_USER": "v"}, "REDIS_URL and REDIS_USER disagree"),
        (
            {"REDIS_URL": "redis://u@a/0", "REDIS_USERNAME": "v"},
            "REDIS_URL and REDIS_USERNAME disagree",
        ),
        ({"REDIS_USER": "a", "REDIS_USERNAME": "b"}, "REDIS_USER and REDIS_USERNAME disagree"),
        ({"REDIS_PORT": "six"}, "REDIS_PORT='six': Expected `int`"),
        ({"PORT": "http"}, "PORT='http': Expected `int`"),
        ({"PORT": "0"}, "SLUICE_INGRESS_PORT must be 1-65535"),
    ],
)
def test_redis_parts_in_conflict_with_the_url_stop_the_process(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        from_env(environ)
    assert "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_the_ingress_listens_on_the_platforms_port_unless_sluice_ingress_port_is_set() -> None:
    assert from_env({"PORT": "10000"}).ingress_port == 10000
    assert from_env({"PORT": "10000", "SLUICE_INGRESS_PORT": "9000"}).ingress_port == 9000


# What Kubernetes sets in every pod of a namespace with Services named `sluice`,
# `sluice-ingress` and `redis` (docker-link style variables).
KUBERNETES = {
    "SLUICE_SERVICE_HOST": "10.0.0.7",
    "SLUICE_SERVICE_PORT": "8080",
    "SLUICE_SERVICE_PORT_HTTP": "8080",
    "SLUICE_PORT": "tcp://10.0.0.7:8080",
    "SLUICE_PORT_8080_TCP": "tcp://10.0.0.7:8080",
    "SLUICE_PORT_8080_TCP_PROTO": "tcp",
    "SLUICE_PORT_8080_TCP_PORT": "8080",
    "SLUICE_PORT_8080_TCP_ADDR": "10.0.0.7",
    "SLUICE_INGRESS_SERVICE_HOST": "10.0.0.8",
    "SLUICE_INGRESS_SERVICE_PORT": "80",
    "SLUICE_INGRESS_PORT": "tcp://10.0.0.8:80",
    "SLUICE_INGRESS_PORT_80_TCP": "tcp://10.0.0.8:80",
    "REDIS_SERVICE_HOST": "10.0.0.9",
    "REDIS_SERVICE_PORT": "6379",
    "REDIS_PORT": "tcp://10.0.0.9:6379",
    "REDIS_PORT_6379_TCP_ADDR": "10.0.0.9",
}


def test_the_variables_kubernetes_injects_for_services_are_not_settings() -> None:
    settings = from_env({**KUBERNETES, "REDIS_URL": "redis://redis:6379/0"})
    assert settings.ingress_port == 8080  # not the injected tcp://10.0.0.8:80
    assert settings.redis.url == "redis://redis:6379/0"
    # A real unknown setting beside them still stops the process.
    with pytest.raises(ConfigurationError, match="SLUICE_WORKERZ"):
        from_env({**KUBERNETES, "SLUICE_WORKERZ": "1"})


def test_log_levels_are_read_in_any_case() -> None:
    assert from_env({"SLUICE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigurationError, match="SLUICE_LOG_LEVEL"):
        from_env({"SLUICE_LOG_LEVEL": "chatty"})
