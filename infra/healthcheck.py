"""The image's HEALTHCHECK: one image runs every role, so the check asks the role.

`python healthcheck.py [PID]` (PID 1, the container's `sluice`, by default): an
ingress (or `sluice dev`) is healthy while GET /healthz on its port answers 200;
a worker or scheduler with a health port (SLUICE_HEALTH_PORT) while its /readyz
answers 200 (Redis answers it; under `--processes N`, every process is ready),
and without one while its process runs, which it does as long as this check can
run in its container. The slim image has no curl, hence Python's urllib.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("worker", "scheduler", "ingress", "dev", "keys", "schedules")
SERVING = {"ingress", "dev"}
PROBED = {"worker", "scheduler"}


def role(pid: int) -> str:
    """The `sluice` role process `pid` runs: the first role word on its command line
    (a later one may be an option's value: `worker --functions ingress`)."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return next((word for word in words if word in ROLES), "")


def ingress_port() -> int:
    # As runtime.settings reads it: SLUICE_INGRESS_PORT, else the platform's PORT.
    return int(os.environ.get("SLUICE_INGRESS_PORT") or os.environ.get("PORT") or 8080)


def url(pid: int) -> str | None:
    """What to ask about process `pid`, or None: healthy while it runs."""
    which = role(pid)
    if which in SERVING:
        return f"http://127.0.0.1:{ingress_port()}/healthz"
    health_port = int(os.environ.get("SLUICE_HEALTH_PORT") or 0)
    if which in PROBED and health_port:
        return f"http://127.0.0.1:{health_port}/readyz"
    return None


def main() -> int:
    asked = url(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    if asked is None:
        return 0
    try:
        with urllib.request.urlopen(asked, timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except urllib.error.HTTPError as exc:
        # Docker keeps the output: the probe's JSON says why (Redis down, a process stuck).
        print(f"{asked}: {exc.code} {exc.read().decode()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{asked}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
