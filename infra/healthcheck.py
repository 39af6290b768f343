"""The image's HEALTHCHECK: one image runs every role, so the check asks the role.

`python healthcheck.py [PID]` (PID 1, the container's `sluice`, by default): an
ingress (or `sluice dev`) is healthy while GET /healthz on its port answers 200;
a worker or scheduler serves no HTTP and is healthy while its process runs,
which it does as long as this check can run in its container. The slim image
has no curl, hence Python's urllib.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

ROLES = ("worker", "scheduler", "ingress", "dev", "keys", "schedules")
SERVING = {"ingress", "dev"}


def role(pid: int) -> str:
    """The `sluice` role process `pid` runs: the first role word on its command line
    (a later one may be an option's value: `worker --functions ingress`)."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return next((word for word in words if word in ROLES), "")


def port() -> int:
    # As runtime.settings reads it: SLUICE_INGRESS_PORT, else the platform's PORT.
    return int(os.environ.get("SLUICE_INGRESS_PORT") or os.environ.get("PORT") or 8080)


def main() -> int:
    pid = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if role(pid) not in SERVING:
        return 0
    url = f"http://127.0.0.1:{port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
