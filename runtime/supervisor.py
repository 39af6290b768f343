"""`sluice worker --processes N`: N worker processes under one supervisor.

One Python process runs its handlers on one core; a machine with more takes more
processes. The supervisor runs no handler and holds no Redis connection: it
starts the children, restarts one that dies (with backoff, so a crash loop does
not spin), gives up when a child keeps dying at start, and on SIGTERM or SIGINT
passes SIGTERM on and waits for every child to finish its jobs within the grace
period. What a dead child held is safe in Redis: the other workers take it over
after the visibility timeout, as they would a lost container's. With a health
port, the supervisor answers it for all of them (runtime.probe.processes_app).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

from sluice.runtime.backoff import Backoff
from sluice.runtime.lifecycle import sleep_unless

log = logging.getLogger(__name__)

# A child that exits sooner than this after it started failed to start (a
# setting, an import, an `on_start` check); one that ran longer crashed.
STEADY_S = 10.0
# Quick failures in a row of one child after which the supervisor gives up.
MAX_FAILURES = 5
# Past the grace period a child still hands its unfinished jobs back to Redis.
HAND_BACK_S = 5.0


# prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> Callable[[], None] | None:
    """What a child runs before it starts (Linux): SIGTERM it when the supervisor
    dies, even by SIGKILL, so no worker outlives its supervisor unwatched and
    a restarted supervisor does not run beside the old one's children."""
    if sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def inherited(slot: int) -> Mapping[str, str]:
    """A child's environment: the supervisor's."""
    return os.environ


class Supervisor:
    """Runs `command(slot)` in `environ(slot)` for slots 0..processes-1 until stopped."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        processes: int,
        *,
        grace_s: float,
        environ: Callable[[int], Mapping[str, str]] = inherited,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self.command = command
        self.environ = environ
        self.processes = processes
        self.grace_s = grace_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_failures = max_failures
        self.live: dict[int, asyncio.subprocess.Process] = {}
        # Children started, restarts included.
        self.started = 0
        self.gave_up = False

    async def run(self, stop: asyncio.Event) -> int:
        """Supervise until `stop` is set; the exit status: 0 when every child
        stopped cleanly, 1 otherwise (or when a child kept failing to start)."""
        async with asyncio.TaskGroup() as group:
            slots = [group.create_task(self._slot(slot, stop)) for slot in range(self.processes)]
        # None: the stop came while a slot waited to restart its child.
        clean = all(task.result() in (0, None) for task in slots)
        return 0 if clean and not self.gave_up else 1

    def pid(self, slot: int) -> int | None:
        """The process id of the child running in `slot` (None: it is being restarted)."""
        process = self.live.get(slot)
        return process.pid if process is not None and process.returncode is None else None

    def signal_children(self, signum: int) -> None:
        for process in self.live.values():
            if process.returncode is None:
                process.send_signal(signum)

    async def _slot(self, slot: int, stop: asyncio.Event) -> int | None:
        """Keep one child running; its exit status once stopped (None: the stop came
        while it waited to restart the child)."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.backoff_base_s, self.backoff_cap_s)
        armed = die_with(os.getpid())
        failures = 0
        while not stop.is_set():
            started = loop.time()
            # Its own session: a Ctrl-C in the terminal reaches the supervisor
            # alone, which passes one SIGTERM on (a second signal would make the
            # child exit at once, without its grace period).
            process = await asyncio.create_subprocess_exec(
                *self.command(slot),
                env=self.environ(slot),
                start_new_session=True,
                preexec_fn=armed,
            )
            self.live[slot] = process
            self.started += 1
            log.info("worker process %d started (pid %d)", slot, process.pid)
            code = await self._wait(process, stop)
            if stop.is_set():
                return code
            ran_s = loop.time() - started
            if ran_s >= STEADY_S:
                failures = 0
                backoff.reset()
            failures += 1
            if failures >= self.max_failures:
                log.error(
                    "worker process %d (pid %d) exited with %d: %d starts in a row ended "
                    "within %.0f s; giving up", slot, process.pid, code, failures, STEADY_S,
                )  # fmt: skip
                self.gave_up = True
                stop.set()
                return code
            delay = backoff.next_delay()
            log.warning(
                "worker process %d (pid %d) exited with %d after %.1f s; restarting in %.1f s",
                slot, process.pid, code, ran_s, delay,
            )  # fmt: skip
            await sleep_unless(stop, delay)
        return None

    async def _wait(self, process: asyncio.subprocess.Process, stop: asyncio.Event) -> int:
        """The child's exit status: when it exits, or after it was asked to stop."""
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if exited.done():
            return await exited
        process.send_signal(signal.SIGTERM)
        done, _ = await asyncio.wait([exited], timeout=self.grace_s + HAND_BACK_S)
        if not done:
            log.error("worker process (pid %d) outlived its grace period; killed", process.pid)
            process.kill()
        code = await exited
        # Ended by the SIGTERM itself: it was still starting, before its handler
        # was installed, so it held no jobs. As clean as a graceful stop.
        return 0 if code == -signal.SIGTERM else code


def install_signals(supervisor: Supervisor, stop: asyncio.Event) -> None:
    """SIGTERM or SIGINT stops the children gracefully; a second one passes SIGTERM
    on again, which makes them exit at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second %s: worker processes exit without waiting", name)
            supervisor.signal_children(signal.SIGTERM)
            return
        log.info("%s: stopping %d worker processes", name, len(supervisor.live))
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
