"""The gate that lets a suspect job run alone in its process."""

from __future__ import annotations

import asyncio

from runtime.worker.isolation import Gate


async def test_a_suspect_waits_for_running_calls_and_holds_new_ones_back() -> None:
    gate = Gate()
    order: list[str] = []
    release_shared = asyncio.Event()
    release_alone = asyncio.Event()

    async def shared(name: str, until: asyncio.Event | None = None) -> None:
        await gate.enter(False)
        order.append(f"{name} in")
        if until is not None:
            await until.wait()
        order.append(f"{name} out")
        gate.leave(False)

    async def alone() -> None:
        await gate.enter(True)
        order.append("suspect in")
        await release_alone.wait()
        order.append("suspect out")
        gate.leave(True)

    first = asyncio.create_task(shared("first", release_shared))
    await asyncio.sleep(0)
    suspect = asyncio.create_task(alone())
    await asyncio.sleep(0)
    assert gate.closed()
    later = asyncio.create_task(shared("later"))
    await asyncio.sleep(0)
    assert order == ["first in"]
    release_shared.set()
    await first
    await asyncio.sleep(0)
    assert order == ["first in", "first out", "suspect in"]
    release_alone.set()
    await asyncio.gather(suspect, later)
    assert order[-3:] == ["suspect out", "later in", "later out"]
    assert not gate.closed()
    assert gate.running == 0


async def test_a_suspect_cancelled_at_the_gate_opens_it_again() -> None:
    gate = Gate()
    await gate.enter(False)
    waiting = asyncio.create_task(gate.enter(True))
    await asyncio.sleep(0)
    assert gate.closed()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not gate.closed()
    gate.leave(False)
    await asyncio.wait_for(gate.enter(True), 1)
    gate.leave(True)
