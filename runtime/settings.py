"""The process settings: one frozen Struct, read from the environment once, in the CLI."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Literal

import msgspec
import phonenumbers

from sluice.runtime.errors import NotInWorker
from sluice.streams.connection import RedisSettings
from sluice.streams.errors import ConfigurationError


class SmsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How `sms.send` (functions/sms.py) delivers: the provider and its credentials."""

    # "": none configured, so messages are only logged (and the worker says so);
    # `sluice dev` defaults to "log", which logs without the warning.
    provider: Literal["", "log", "twilio", "callback"] = ""
    # The sender when a job names none (a number, or a Twilio messaging service "MG...").
    sender: str = ""
    # One provider call, connect to answer; past it the attempt fails and is retried.
    timeout_s: float = 10.0
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    # Twilio's API, or any provider (or test server) that speaks its Messages API.
    twilio_base_url: str = "https://api.twilio.com"
    # The deployment's own endpoint, sent each message as signed JSON (Standard Webhooks).
    callback_url: str = ""
    # The signing secret: base64, optionally with the "whsec_" prefix.
    callback_secret: str = ""
    # The region (ISO 3166 code, "US") national numbers are read in, for sms.send
    # and whatsapp.send (runtime.phones); "": only international numbers.
    default_region: str = ""
    # A workspace's own region, where its customers' numbers are national ones of
    # another country than the deployment's: workspace -> ISO 3166 code.
    regions: dict[str, str] = {}

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigurationError("SLUICE_SMS_TIMEOUT_S must be positive")
        if self.default_region and self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigurationError(
                f"SLUICE_SMS_DEFAULT_REGION={self.default_region!r} is no region phone"
                " numbers know (an ISO 3166 code in capitals, such as US or DE)"
            )
        unknown = {
            ws: r for ws, r in self.regions.items() if r not in phonenumbers.SUPPORTED_REGIONS
        }
        if unknown:
            raise ConfigurationError(
                f"SLUICE_SMS_REGIONS: {', '.join(f'{r!r} (for {ws})' for ws, r in unknown.items())}"
                " is no region phone numbers know (an ISO 3166 code in capitals, such as US or DE)"
            )
        if self.provider == "twilio" and not (self.twilio_account_sid and self.twilio_auth_token):
            raise ConfigurationError(
                "SLUICE_SMS_PROVIDER=twilio needs SLUICE_TWILIO_ACCOUNT_SID and "
                "SLUICE_TWILIO_AUTH_TOKEN"
            )
        if self.provider == "callback":
            if not self.callback_url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    "SLUICE_SMS_PROVIDER=callback needs SLUICE_SMS_CALLBACK_URL (http or https)"
                )
            signing_key(self.callback_secret, "SLUICE_SMS_CALLBACK_SECRET")

    def __repr__(self) -> str:
        """Without the token and the secret: settings may end up in a log or a traceback."""
        return redacted(self, "twilio_auth_token", "callback_secret")

    @property
    def callback_key(self) -> bytes:
        """The HMAC key that signs callback requests (functions/signing.py)."""
        return signing_key(self.callback_secret, "SLUICE_SMS_CALLBACK_SECRET")


class WhatsAppSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How `whatsapp.send` (functions/whatsapp.py) delivers."""

    # "": none configured, so messages are only logged (and the worker says so).
    provider: Literal["", "log", "cloud", "callback"] = ""
    timeout_s: float = 10.0
    # The WhatsApp Business Cloud API: the sending number's id and a bearer token.
    phone_number_id: str = ""
    access_token: str = ""
    # The Graph API with its version; any server that speaks the Cloud API works.
    base_url: str = "https://graph.facebook.com/v21.0"
    callback_url: str = ""
    callback_secret: str = ""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigurationError("SLUICE_WHATSAPP_TIMEOUT_S must be positive")
        if self.provider == "cloud" and not (self.phone_number_id and self.access_token):
            raise ConfigurationError(
                "SLUICE_WHATSAPP_PROVIDER=cloud needs SLUICE_WHATSAPP_PHONE_NUMBER_ID and "
                "SLUICE_WHATSAPP_ACCESS_TOKEN"
            )
        if self.provider == "callback":
            if not self.callback_url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    "SLUICE_WHATSAPP_PROVIDER=callback needs SLUICE_WHATSAPP_CALLBACK_URL "
                    "(http or https)"
                )
            signing_key(self.callback_secret, "SLUICE_WHATSAPP_CALLBACK_SECRET")

    def __repr__(self) -> str:
        return redacted(self, "access_token", "callback_secret")

    @property
    def callback_key(self) -> bytes:
        return signing_key(self.callback_secret, "SLUICE_WHATSAPP_CALLBACK_SECRET")


def redacted(settings: msgspec.Struct, *secrets: str) -> str:
    """`settings`' repr with the values of `secrets` shown as ***."""
    shown = {
        f: "***" if f in secrets and v else v for f, v in msgspec.structs.asdict(settings).items()
    }
    return f"{type(settings).__name__}({', '.join(f'{f}={v!r}' for f, v in shown.items())})"


def signing_key(secret: str, variable: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ("whsec_" + base64), checked here
    so a bad one stops the process at start rather than failing every job."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        key = b""
    if len(key) < 16:
        raise ConfigurationError(f"{variable} must be base64 of at least 16 bytes (whsec_...)")
    return key


class EmailSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How `email.send` delivers (functions/email.py): the `SLUICE_EMAIL_*` and
    `SLUICE_SMTP_*` variables."""

    # smtp: the server below; log: a log line per batch, nothing sent;
    # "": none configured, so nothing is sent either (and the log line says so).
    provider: Literal["", "log", "smtp", "callback"] = ""
    # The From of a message that names none.
    sender: str = ""
    smtp_host: str = ""
    # 0: the port of the TLS mode (587 starttls, 465 tls, 25 none).
    smtp_port: int = 0
    # starttls: upgrade a plain connection (refused if the server cannot);
    # tls: TLS from the first byte (implicit TLS); none: plain text.
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    # PEM certificates to trust for the server besides the system's (a private relay).
    smtp_ca_file: str = ""
    # The longest wait for the connection and for each SMTP reply.
    smtp_timeout_s: float = 10.0
    # The deployment's own endpoint, sent each message as signed JSON (Standard
    # Webhooks), and its signing secret (base64, optionally "whsec_"-prefixed).
    callback_url: str = ""
    callback_secret: str = ""

    def __post_init__(self) -> None:
        if self.provider == "callback":
            if not self.callback_url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    "SLUICE_EMAIL_PROVIDER=callback needs SLUICE_EMAIL_CALLBACK_URL (http or https)"
                )
            signing_key(self.callback_secret, "SLUICE_EMAIL_CALLBACK_SECRET")
        if self.provider == "smtp" and not self.smtp_host:
            raise ConfigurationError("SLUICE_SMTP_HOST is needed for SLUICE_EMAIL_PROVIDER=smtp")
        if not 0 <= self.smtp_port < 65536:
            raise ConfigurationError("SLUICE_SMTP_PORT must be 0 (by TLS mode) or 1-65535")
        if self.smtp_user and not self.smtp_password:
            raise ConfigurationError("SLUICE_SMTP_USER needs SLUICE_SMTP_PASSWORD")
        if self.smtp_timeout_s <= 0:
            raise ConfigurationError("SLUICE_SMTP_TIMEOUT_S must be positive")

    def __repr__(self) -> str:
        """Without the password and the secret: settings may end up in a log or a traceback."""
        return redacted(self, "smtp_password", "callback_secret")

    @property
    def callback_key(self) -> bytes:
        """The HMAC key that signs callback requests (functions/signing.py)."""
        return signing_key(self.callback_secret, "SLUICE_EMAIL_CALLBACK_SECRET")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How `webhook.deliver` (functions/webhook.py) reaches the workspaces' endpoints."""

    # One POST to one endpoint, connect to answer; past it the attempt is retried.
    timeout_s: float = 10.0
    # Networks (CIDR or a single address) and host names an endpoint may be on
    # although the SSRF guard (functions/ssrf.py) refuses them: comma-separated.
    allow: str = ""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigurationError("SLUICE_WEBHOOK_TIMEOUT_S must be positive")
        self.allowed  # noqa: B018 (checked at start: a bad entry stops the process)

    @property
    def allowed(self) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
        """`allow` parsed: the networks, and the host names (lower case)."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in filter(None, (part.strip() for part in self.allow.split(","))):
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,253}", item):
                    raise ConfigurationError(
                        f"SLUICE_WEBHOOK_ALLOW: {item!r} is neither a network nor a host name"
                    ) from None
                hosts.add(item.lower().rstrip("."))
        return tuple(networks), frozenset(hosts)


TRACE_EXCLUDE = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/admin", "/admin/queues",
                 "/dashboard", "/docs", "/docs/assets/{name}", "GET /v1/queues",
                 "GET /v1/metrics", "GET /v1/metrics/history", "GET /v1/workers", "GET /v1/jobs",
                 "GET /v1/jobs/{id}", "GET /v1/schedules", "GET /v1/dead-letters/{function}",
                 "GET /v1/limits/{function}")  # fmt: skip


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    redis: RedisSettings = RedisSettings()
    sms: SmsSettings = SmsSettings()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    email: EmailSettings = EmailSettings()
    webhook: WebhookSettings = WebhookSettings()
    functions: str = "functions:FUNCTIONS"
    grace_s: float = 25.0
    block_ms: int = 2000
    reclaim_interval_s: float = 5.0
    # A scheduler re-checks every delayed set this often even without a wake-up,
    # so a lost notification delays a job by at most this much.
    scheduler_recheck_s: float = 1.0
    # A worker also promotes its functions' due jobs (delayed, retries, rate-limit
    # deferrals, repeat ticks), so a lone worker never stalls; off for deployments
    # that run dedicated schedulers (any number may promote, none twice).
    worker_scheduler: bool = True
    consumer: str = ""
    # The health port of workers and schedulers (runtime.probe); 0: none.
    health_port: int = 0
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    demo: bool = False
    # Where `report.generate` (functions/report.py) writes its CSV files; "": a
    # `sluice-reports` folder in the system's temporary directory.
    reports_dir: str = ""
    # Jobs started a second, by function name, in place of the declared `rate_per_s`
    # (0: none); run-time overrides (runtime.client.limits) still win.
    rates: dict[str, float] = {}
    # parent: a job's spans are children of its publish span (one trace per job);
    # link: each delivery starts a trace linked to it (runtime.telemetry.tracing).
    trace_mode: Literal["parent", "link"] = "parent"
    # Ingress routes served without a span: templates, alone or after a method
    # (runtime.ingress.observe). Default: probes, scrapes, the docs and the
    # dashboard's pages and polling.
    trace_exclude: tuple[str, ...] = TRACE_EXCLUDE
    # A JSON line per ingress request (logger sluice.access).
    access_log: bool = False
    # The ingress (`sluice ingress`, and in `sluice dev`).
    ingress_host: str = "0.0.0.0"
    ingress_port: int = 8080
    # API keys (runtime.ingress.auth): a JSON file, or the same JSON inline.
    api_keys_file: str = ""
    api_keys: str = ""
    ingress_max_body_bytes: int = 10 * 1024 * 1024
    # A publish not confirmed by Redis within this is answered 503.
    ingress_write_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.grace_s < 0:
            raise ConfigurationError("SLUICE_GRACE_S must be 0 or more")
        if self.reclaim_interval_s <= 0:
            raise ConfigurationError("SLUICE_RECLAIM_INTERVAL_S must be positive")
        if self.scheduler_recheck_s <= 0:
            raise ConfigurationError("SLUICE_SCHEDULER_RECHECK_S must be positive")
        if not 0 <= self.health_port < 65536:
            raise ConfigurationError("SLUICE_HEALTH_PORT must be 1-65535, or 0 for none")
        if not 0 < self.ingress_port < 65536:
            raise ConfigurationError("SLUICE_INGRESS_PORT must be 1-65535")
        if self.ingress_max_body_bytes < 1024:
            raise ConfigurationError("SLUICE_INGRESS_MAX_BODY_BYTES must be at least 1024")
        if self.ingress_write_timeout_s <= 0:
            raise ConfigurationError("SLUICE_INGRESS_WRITE_TIMEOUT_S must be positive")
        # A blocking read must come back before the socket timeout calls it dead.
        if not 0 < self.block_ms < self.redis.socket_timeout_s * 1000:
            raise ConfigurationError(
                f"SLUICE_BLOCK_MS must be above 0 and below the socket timeout "
                f"({self.redis.socket_timeout_s * 1000:g} ms), got {self.block_ms}"
            )


# Environment variable -> (section, field). The README's table lists the same.
VARIABLES: dict[str, tuple[str, str]] = {
    "REDIS_URL": ("redis", "url"),
    "REDIS_USERNAME": ("redis", "username"),
    "REDIS_USER": ("redis", "username"),
    "REDIS_PASSWORD": ("redis", "password"),
    "SLUICE_REDIS_CONNECT_TIMEOUT_S": ("redis", "connect_timeout_s"),
    "SLUICE_REDIS_SOCKET_TIMEOUT_S": ("redis", "socket_timeout_s"),
    "SLUICE_REDIS_RETRIES": ("redis", "retries"),
    "SLUICE_REDIS_CALL_TIMEOUT_S": ("redis", "call_timeout_s"),
    "SLUICE_REDIS_MAX_CONNECTIONS": ("redis", "max_connections"),
    "SLUICE_REDIS_CLUSTER": ("redis", "cluster"),
    "SLUICE_REDIS_CA_FILE": ("redis", "ca_file"),
    "SLUICE_FUNCTIONS": ("", "functions"),
    "SLUICE_GRACE_S": ("", "grace_s"),
    "SLUICE_BLOCK_MS": ("", "block_ms"),
    "SLUICE_RECLAIM_INTERVAL_S": ("", "reclaim_interval_s"),
    "SLUICE_SCHEDULER_RECHECK_S": ("", "scheduler_recheck_s"),
    "SLUICE_WORKER_SCHEDULER": ("", "worker_scheduler"),
    "SLUICE_CONSUMER": ("", "consumer"),
    "SLUICE_HEALTH_PORT": ("", "health_port"),
    "SLUICE_LOG_FORMAT": ("", "log_format"),
    "SLUICE_LOG_LEVEL": ("", "log_level"),
    "SLUICE_DEMO": ("", "demo"),
    "SLUICE_REPORTS_DIR": ("", "reports_dir"),
    "SLUICE_TRACE_MODE": ("", "trace_mode"),
    "SLUICE_TRACE_EXCLUDE": ("", "trace_exclude"),
    "SLUICE_ACCESS_LOG": ("", "access_log"),
    "SLUICE_RATES": ("", "rates"),
    "SLUICE_INGRESS_HOST": ("", "ingress_host"),
    "SLUICE_INGRESS_PORT": ("", "ingress_port"),
    "SLUICE_API_KEYS_FILE": ("", "api_keys_file"),
    "SLUICE_API_KEYS": ("", "api_keys"),
    "SLUICE_INGRESS_MAX_BODY_BYTES": ("", "ingress_max_body_bytes"),
    "SLUICE_INGRESS_WRITE_TIMEOUT_S": ("", "ingress_write_timeout_s"),
    "SLUICE_SMS_PROVIDER": ("sms", "provider"),
    "SLUICE_SMS_FROM": ("sms", "sender"),
    "SLUICE_SMS_DEFAULT_REGION": ("sms", "default_region"),
    "SLUICE_SMS_REGIONS": ("sms", "regions"),
    "SLUICE_SMS_TIMEOUT_S": ("sms", "timeout_s"),
    "SLUICE_TWILIO_ACCOUNT_SID": ("sms", "twilio_account_sid"),
    "SLUICE_TWILIO_AUTH_TOKEN": ("sms", "twilio_auth_token"),
    "SLUICE_TWILIO_BASE_URL": ("sms", "twilio_base_url"),
    "SLUICE_SMS_CALLBACK_URL": ("sms", "callback_url"),
    "SLUICE_SMS_CALLBACK_SECRET": ("sms", "callback_secret"),
    "SLUICE_WHATSAPP_PROVIDER": ("whatsapp", "provider"),
    "SLUICE_WHATSAPP_TIMEOUT_S": ("whatsapp", "timeout_s"),
    "SLUICE_WHATSAPP_PHONE_NUMBER_ID": ("whatsapp", "phone_number_id"),
    "SLUICE_WHATSAPP_ACCESS_TOKEN": ("whatsapp", "access_token"),
    "SLUICE_WHATSAPP_BASE_URL": ("whatsapp", "base_url"),
    "SLUICE_WHATSAPP_CALLBACK_URL": ("whatsapp", "callback_url"),
    "SLUICE_WHATSAPP_CALLBACK_SECRET": ("whatsapp", "callback_secret"),
    "SLUICE_EMAIL_PROVIDER": ("email", "provider"),
    "SLUICE_EMAIL_FROM": ("email", "sender"),
    "SLUICE_SMTP_HOST": ("email", "smtp_host"),
    "SLUICE_SMTP_PORT": ("email", "smtp_port"),
    "SLUICE_SMTP_TLS": ("email", "smtp_tls"),
    "SLUICE_SMTP_USER": ("email", "smtp_user"),
    "SLUICE_SMTP_PASSWORD": ("email", "smtp_password"),
    "SLUICE_SMTP_CA_FILE": ("email", "smtp_ca_file"),
    "SLUICE_SMTP_TIMEOUT_S": ("email", "smtp_timeout_s"),
    "SLUICE_EMAIL_CALLBACK_URL": ("email", "callback_url"),
    "SLUICE_EMAIL_CALLBACK_SECRET": ("email", "callback_secret"),
    "SLUICE_WEBHOOK_TIMEOUT_S": ("webhook", "timeout_s"),
    "SLUICE_WEBHOOK_ALLOW": ("webhook", "allow"),
}

# Redis as the apps Sluice replaces configure it: the parts of a URL, which
# from_env builds when REDIS_URL is not set (and checks against it when it is).
REDIS_PARTS: dict[str, type] = {
    "REDIS_HOST": str,
    "REDIS_PORT": int,
    "REDIS_DB": int,
    "REDIS_TLS": bool,
}

# What the platforms that run containers (Railway, Render, Heroku) set for the
# port to serve HTTP on; SLUICE_INGRESS_PORT, the deployment's own, wins over it.
PLATFORM_PORT = "PORT"

# A section: a field of Settings that is a Struct of its own (redis, email, ...).
SECTIONS: dict[str, type[msgspec.Struct]] = {
    f.name: f.type
    for f in msgspec.structs.fields(Settings)
    if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct)
}


def _of(*sections: str) -> tuple[str, ...]:
    return tuple(name for name, (section, _) in VARIABLES.items() if section in sections)


# The variables only some commands read; every other one is read by every process
# that runs a role (the Redis connection, SLUICE_FUNCTIONS, logs, tracing, ...).
_OWN: dict[str, tuple[str, ...]] = {
    "worker": (
        "SLUICE_GRACE_S",
        "SLUICE_BLOCK_MS",
        "SLUICE_RECLAIM_INTERVAL_S",
        "SLUICE_CONSUMER",
        "SLUICE_WORKER_SCHEDULER",
        "SLUICE_SCHEDULER_RECHECK_S",
        "SLUICE_HEALTH_PORT",
        # The handlers' own (current_settings()).
        *_of("sms", "whatsapp", "email", "webhook"),
        "SLUICE_REPORTS_DIR",
    ),
    "scheduler": ("SLUICE_SCHEDULER_RECHECK_S", "SLUICE_HEALTH_PORT"),
    "ingress": (
        "SLUICE_INGRESS_HOST",
        "SLUICE_INGRESS_PORT",
        PLATFORM_PORT,
        # Phone numbers are normalised where events are published.
        "SLUICE_SMS_DEFAULT_REGION",
        "SLUICE_SMS_REGIONS",
        "SLUICE_API_KEYS_FILE",
        "SLUICE_API_KEYS",
        "SLUICE_INGRESS_MAX_BODY_BYTES",
        "SLUICE_INGRESS_WRITE_TIMEOUT_S",
        # Phone numbers are checked at publish (runtime.phones).
        "SLUICE_SMS_DEFAULT_REGION",
    ),
    "dev": ("SLUICE_DEMO",),
}


def read_by(command: str) -> list[str]:
    """The environment variables `sluice <command>` reads, for its --help: `dev` runs
    every role, `schedules` needs only Redis and the functions, `check` the health
    port, `openapi` the functions, `keys` nothing."""
    redis = _of("redis")
    everything = [*redis, *REDIS_PARTS, *(n for n in VARIABLES if n not in redis), PLATFORM_PORT]
    connection = [name for name in everything if name.startswith(("REDIS_", "SLUICE_REDIS_"))]
    if command == "dev":
        return everything
    if command == "schedules":
        return [*connection, "SLUICE_FUNCTIONS"]
    if command == "check":
        return ["SLUICE_HEALTH_PORT"]
    if command == "openapi":
        return ["SLUICE_FUNCTIONS"]
    if command not in _OWN:
        return []
    someones = {name for own in _OWN.values() for name in own}
    return [n for n in everything if n not in someones or n in _OWN[command]]


def from_env(environ: Mapping[str, str], **overrides: object) -> Settings:
    """Build Settings from `environ`; a bad value raises one line naming the variable.

    `overrides` (field name -> value) win over the environment.
    """
    # Not settings, whatever their names (a Service named `redis` brings REDIS_PORT=tcp://...).
    injected = kubernetes_service_variables(environ)
    environ = {k: v for k, v in environ.items() if k not in injected}
    unknown = sorted(k for k in environ if k.startswith("SLUICE_") and k not in VARIABLES)
    if unknown:
        raise ConfigurationError(
            f"unknown setting {', '.join(unknown)}; known: {', '.join(VARIABLES)}"
        )
    structs: dict[str, type[msgspec.Struct]] = {**SECTIONS, "": Settings}
    types = {
        (section, f.name): f.type
        for section, struct in structs.items()
        for f in msgspec.structs.fields(struct)
    }
    values: dict[str, dict[str, object]] = {section: {} for section in structs}
    for name, (section, field) in VARIABLES.items():
        if name in environ:
            # Levels as Python's logging takes them: `debug` too.
            raw = environ[name].upper() if name == "SLUICE_LOG_LEVEL" else environ[name]
            values[section][field] = _convert(name, raw, types[section, field])
    values["redis"].update(_redis(environ))
    if PLATFORM_PORT in environ and "SLUICE_INGRESS_PORT" not in environ:
        values[""]["ingress_port"] = _convert(PLATFORM_PORT, environ[PLATFORM_PORT], int)
    values[""].update(overrides)
    try:
        return msgspec.convert(
            {**{section: values[section] for section in SECTIONS}, **values[""]},
            Settings,
            from_attributes=True,
        )
    except msgspec.ValidationError as exc:
        raise ConfigurationError(str(exc)) from None


_SERVICE_PORTS = re.compile(r"_PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?")


def kubernetes_service_variables(environ: Mapping[str, str]) -> set[str]:
    """The variables Kubernetes sets in every pod for each Service: a Service named
    `sluice` (or `sluice-ingress`) brings SLUICE_SERVICE_HOST, SLUICE_PORT=tcp://...,
    SLUICE_PORT_8080_TCP_ADDR and the like, which are not settings and must not stop
    the process as unknown ones (nor SLUICE_INGRESS_PORT=tcp://... be read as a port)."""
    found: set[str] = set()
    for host in (k for k in environ if k.endswith("_SERVICE_HOST")):
        prefix = host.removesuffix("_SERVICE_HOST")
        found.add(host)
        for name, value in environ.items():
            rest = name.removeprefix(prefix)
            if rest == name:
                continue
            if rest.startswith("_SERVICE_PORT") or (
                _SERVICE_PORTS.fullmatch(rest)
                and (rest != "_PORT" or value.startswith(("tcp://", "udp://", "sctp://")))
            ):
                found.add(name)
    return found


def _redis(environ: Mapping[str, str]) -> dict[str, object]:
    """The Redis section's url, username and password: REDIS_URL as it is, or, when
    it is not set, the URL built from REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_TLS
    and the credentials (quoted into it, so the logged URL shows the user and
    `***`). Given beside REDIS_URL, every part must agree with it."""
    named = [n for n in ("REDIS_USER", "REDIS_USERNAME") if n in environ]
    if len({environ[n] for n in named}) > 1:
        raise ConfigurationError("REDIS_USER and REDIS_USERNAME disagree; set one of them")
    user = environ[named[0]] if named else None
    password = environ.get("REDIS_PASSWORD")
    parts = {n: _convert(n, environ[n], t) for n, t in REDIS_PARTS.items() if n in environ}
    if not parts and user is None and password is None:
        return {}  # REDIS_URL as it is (or the default), nothing to build or to check
    if "REDIS_HOST" in parts:  # host names are case-insensitive; urlsplit lowers them
        parts["REDIS_HOST"] = str(parts["REDIS_HOST"]).lower()
    if "REDIS_URL" not in environ:
        tls, host = parts.get("REDIS_TLS", False), str(parts.get("REDIS_HOST", "127.0.0.1"))
        login = ""
        if user is not None or password is not None:
            secret = "" if password is None else ":" + urllib.parse.quote(password, safe="")
            login = f"{urllib.parse.quote(user or '', safe='')}{secret}@"
        netloc = f"[{host}]" if ":" in host else host
        url = (
            f"{'rediss' if tls else 'redis'}://{login}{netloc}:"
            f"{parts.get('REDIS_PORT', 6379)}/{parts.get('REDIS_DB', 0)}"
        )
        return {"url": url, "username": None, "password": None}
    split = urllib.parse.urlsplit(environ["REDIS_URL"])
    query = urllib.parse.parse_qs(split.query)
    unix = split.scheme == "unix"  # a socket path: no host, port or TLS to agree with
    try:
        in_url: dict[str, object] = {
            "REDIS_HOST": None if unix else split.hostname,
            "REDIS_PORT": None if unix else split.port or 6379,
            "REDIS_DB": int(("" if unix else split.path.strip("/")) or query.get("db", ["0"])[0]),
            "REDIS_TLS": None if unix else split.scheme.removesuffix("+cluster") == "rediss",
        }
    except ValueError:
        raise ConfigurationError("REDIS_URL: its port or database is not a number") from None
    url_password = split.password or next(iter(query.get("password", [])), None)
    url_user = split.username or None
    if url_user is not None and user is not None:
        in_url[named[0]], parts[named[0]] = urllib.parse.unquote(url_user), user
    if url_password is not None and password is not None:
        in_url["REDIS_PASSWORD"] = urllib.parse.unquote(url_password)
        parts["REDIS_PASSWORD"] = password
    wrong = [n for n, v in parts.items() if in_url[n] != v]
    if wrong:
        raise ConfigurationError(
            f"REDIS_URL and {', '.join(wrong)} disagree; set REDIS_URL or the parts, not both"
        )
    return {}


def _convert(name: str, raw: str, field_type: object) -> object:
    try:
        if getattr(field_type, "__origin__", None) is dict:
            return msgspec.convert(_pairs(name, raw), field_type, strict=False)
        if getattr(field_type, "__origin__", None) is tuple:
            # A list setting: comma-separated (SLUICE_TRACE_EXCLUDE); empty: none.
            items = [part.strip() for part in raw.split(",") if part.strip()]
            return msgspec.convert(items, field_type, strict=False)
        return msgspec.convert(raw, field_type, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{name}={raw!r}: {str(exc).split(' - at')[0]}") from None


def _pairs(name: str, raw: str) -> dict[str, str]:
    """`a=1,b=2` as a mapping, the shape of a mapping setting (SLUICE_RATES)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{name}={raw!r}: expected name=value pairs, comma-separated")
        pairs[key.strip()] = value.strip()
    return pairs


# The settings of the worker whose task reads them: set by the worker host for
# its own tasks (contextvars are copied into every task it starts), so two
# workers in one process (tests) each see their own, and nothing is global.
_worker_settings: ContextVar[Settings] = ContextVar("sluice_worker_settings")


def use_settings(settings: Settings) -> None:
    """Make `settings` what `current_settings` returns in this task and those it starts."""
    _worker_settings.set(settings)


def current_settings() -> Settings:
    """The settings of the worker running the calling handler: how a function reads
    its deployment's configuration (`current_settings().sms`), which the CLI read
    from the environment once."""
    try:
        return _worker_settings.get()
    except LookupError:
        raise NotInWorker("current_settings() is known only to handlers a worker runs") from None
