"""API keys: each scoped to workspaces, or admin; stored only as hashes.

A key is `sk_` and 32 random bytes (base64url), shown once by `sluice keys
create`. What is stored is its SHA-256: the keys are random, so a plain hash
cannot be reversed by guessing, and a lookup costs one hash per request. A key
is never logged; a rejected request is logged with the key's first 6 characters
at most.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import msgspec

from runtime.ingress.problems import Problem
from streams.errors import ConfigurationError
from streams.keys import check_token

PREFIX = "sk_"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One key as configured: its hash and what it may do."""

    name: str
    # "sha256:<hex>" of the key.
    hash: str
    workspaces: tuple[str, ...] = ()
    admin: bool = False

    def __post_init__(self) -> None:
        if not self.hash.startswith("sha256:") or len(self.hash) != 71:
            raise ConfigurationError(f"API key {self.name!r}: hash must be sha256:<64 hex>")
        if not self.admin and not self.workspaces:
            raise ConfigurationError(f"API key {self.name!r}: give workspaces or admin")
        for workspace in self.workspaces:
            check_token("workspace", workspace)

    def may(self, workspace: str) -> bool:
        return self.admin or workspace in self.workspaces


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, workspaces: tuple[str, ...], admin: bool) -> tuple[str, ApiKey]:
    """A fresh key and its stored form."""
    key = PREFIX + secrets.token_urlsafe(32)
    return key, ApiKey(name=name, hash=digest(key), workspaces=workspaces, admin=admin)


class KeyRing:
    """The configured keys, by hash."""

    # Headers already identified, so a client sending the same key on every
    # request is not hashed every time (a hash was 2 % of an ingress request).
    # Only known keys are remembered; bounded, and emptied when full.
    SEEN_MAX = 1024

    def __init__(self, keys: list[ApiKey]) -> None:
        self.by_hash = {k.hash: k for k in keys}
        if len(self.by_hash) != len(keys):
            raise ConfigurationError("the same API key is configured twice")
        self.seen: dict[str, ApiKey] = {}

    @classmethod
    def parse(cls, text: str | bytes, source: str) -> KeyRing:
        try:
            return cls(msgspec.json.decode(text, type=list[ApiKey]))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ConfigurationError(f"API keys in {source}: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            return cls.parse(path.read_bytes(), str(path))
        except OSError as exc:
            raise ConfigurationError(f"API keys file {path}: {exc.strerror}") from None

    def identify(self, authorization: str | None) -> ApiKey:
        """The key of an `Authorization: Bearer <key>` header; 401 without a known one."""
        if authorization is not None and (known := self.seen.get(authorization)):
            return known
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(PREFIX):
            raise Problem(401, "Unauthorized", "send Authorization: Bearer <API key>")
        found = self.by_hash.get(digest(key.strip()))
        if found is None:
            raise Problem(401, "Unauthorized", "unknown API key")
        if len(self.seen) >= self.SEEN_MAX:
            self.seen.clear()
        self.seen[authorization or ""] = found
        return found


def require_admin(key: ApiKey) -> None:
    if not key.admin:
        raise Problem(403, "Forbidden", "this route needs an admin key")


def scope(key: ApiKey, workspace: str | None) -> str | None:
    """The workspace a request acts for: the one it names, if the key may; none
    named, the key's only workspace, or every workspace for an admin key."""
    if workspace is None and not key.admin:
        if len(key.workspaces) != 1:
            raise Problem(422, "Invalid request", "give workspace: this key has several")
        workspace = key.workspaces[0]
    if workspace is not None:
        require_workspace(key, check_token("workspace", workspace))
    return workspace


def require_workspace(key: ApiKey, workspace: str) -> None:
    if not key.may(workspace):
        raise Problem(403, "Forbidden", f"this key may not act for workspace {workspace!r}")
