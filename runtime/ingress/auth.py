"""API keys: each scoped to workspaces, or admin; stored only as hashes.

A key is `sk_` and 32 random bytes (base64url), shown once by `sluice keys
create`. What is stored is its SHA-256: the keys are random, so a plain hash
cannot be reversed by guessing, and a lookup costs one hash per request. A key
is never logged; a rejected request is logged with the key's first 6 characters
at most.

Keys from a file are reloaded when the file changes (checked at most once a
second, on a request), so a revoked key stops working within seconds on every
ingress; a new file that does not load keeps the keys loaded before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from pathlib import Path

import msgspec

from sluice.runtime.ingress.problems import Problem
from sluice.streams.errors import ConfigurationError
from sluice.streams.keys import check_token

PREFIX = "sk_"

log = logging.getLogger(__name__)


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
    """The configured keys, by hash; from a file, reloaded when it changes."""

    # Headers already identified, so a client sending the same key on every
    # request is not hashed every time (the hash showed in an ingress request's profile).
    # Only known keys are remembered; bounded, and emptied when full or reloaded.
    SEEN_MAX = 1024

    def __init__(
        self, keys: list[ApiKey], source: Path | None = None, check_every_s: float = 1.0
    ) -> None:
        self.by_hash = self._by_hash(keys)
        self.seen: dict[str, ApiKey] = {}
        self.source = source
        # How often the file's size, time and inode are looked at (a stat call).
        self.check_every_s = check_every_s
        self._checked = time.monotonic()
        self._signature = self._stat()

    @staticmethod
    def _by_hash(keys: list[ApiKey]) -> dict[str, ApiKey]:
        by_hash = {k.hash: k for k in keys}
        if len(by_hash) != len(keys):
            raise ConfigurationError("the same API key is configured twice")
        return by_hash

    @staticmethod
    def decode(text: str | bytes, source: str) -> list[ApiKey]:
        try:
            return msgspec.json.decode(text, type=list[ApiKey])
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ConfigurationError(f"API keys in {source}: {exc}") from None

    @classmethod
    def parse(cls, text: str | bytes, source: str) -> KeyRing:
        return cls(cls.decode(text, source))

    @staticmethod
    def read(path: Path) -> list[ApiKey]:
        try:
            return KeyRing.decode(path.read_bytes(), str(path))
        except OSError as exc:
            raise ConfigurationError(f"API keys file {path}: {exc.strerror}") from None

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        return cls(cls.read(path), source=path)

    def _stat(self) -> tuple[int, int, int] | None:
        if self.source is None:
            return None
        try:
            found = os.stat(self.source)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def _reload_if_changed(self) -> None:
        """Load the keys file again if it changed since last seen; on a file that does
        not load (bad JSON, a bad key, gone), keep the keys and log it once."""
        now = time.monotonic()
        if now - self._checked < self.check_every_s:
            return
        self._checked = now
        signature = self._stat()
        if signature == self._signature:
            return
        self._signature = signature
        assert self.source is not None
        try:
            by_hash = self._by_hash(self.read(self.source))
        except ConfigurationError as exc:
            count = len(self.by_hash)
            log.error("%s; keeping the %d key%s loaded before", exc, count, "s"[: count != 1])
            return
        self.by_hash = by_hash
        # A revoked key may be remembered: forget them all.
        self.seen = {}
        log.info("API keys reloaded from %s: %d keys", self.source, len(by_hash))

    def identify(self, authorization: str | None) -> ApiKey:
        """The key of an `Authorization: Bearer <key>` header; 401 without a known one."""
        if self.source is not None:
            self._reload_if_changed()
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
