"""What the battery's security scenarios share: their figures, and the keys file of
an ingress with one key of each kind."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import msgspec

from runtime.ingress.auth import ApiKey, new_key


class Tally(msgspec.Struct, frozen=True):
    """A security scenario's figures: counts by name, in the order given."""

    scenario: str
    counts: dict[str, int]

    def line(self) -> str:
        counts = (f"{name}={value}" for name, value in self.counts.items())
        return " ".join([f"scenario={self.scenario}", *counts])


class Keys:
    """API keys as the ingress is configured with them: `admin`, the workspace keys
    `acme` (tenant A) and `other` (tenant B), and `gone`, an acme key that `revoke`
    takes out of the keys file."""

    WHO: ClassVar[dict[str, tuple[str, ...]]] = {
        "admin": (),
        "acme": ("acme",),
        "other": ("other",),
        "gone": ("acme",),
    }

    def __init__(self, path: Path) -> None:
        self.path = path
        self.plain: dict[str, str] = {}
        self.stored: dict[str, ApiKey] = {}
        for who, workspaces in self.WHO.items():
            self.plain[who], self.stored[who] = new_key(who, workspaces, admin=not workspaces)
        self._write()

    def _write(self) -> None:
        self.path.write_bytes(msgspec.json.encode(list(self.stored.values())))

    def revoke(self, who: str) -> None:
        del self.stored[who]
        self._write()

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain[who]}"}
