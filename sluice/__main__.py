"""`python -m sluice` is `sluice`."""

import signal
import sys

# Before the imports, which are most of a start (the deployment's own modules
# among them): a process stopped while it starts (a rollout overtaken by the
# next) holds nothing yet and exits 0 rather than dying by the signal. The
# running roles take SIGTERM over (sluice.runtime.lifecycle).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from sluice.runtime.cli import main  # noqa: E402 - after the handler, on purpose

main()
