"""Wake-up calls for schedulers: a pub/sub subscription to partitions' wake channels.

Publish and settle scripts announce a job due earlier than any other of its
partition; a scheduler asleep until a later time hears it and wakes at once.
A message lost while disconnected costs at most the scheduler's re-check interval.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.connection import Redis
from streams.errors import wrap_unavailable


class WakeListener:
    """Subscribed to `channels`; `wait` returns those woken within a timeout."""

    def __init__(self, client: Redis, channels: Sequence[str]) -> None:
        self.channels = list(channels)
        # redis-py re-subscribes these on its own after reconnecting.
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.subscribed = False

    async def wait(self, timeout_s: float) -> set[str]:
        """Block up to `timeout_s` for a wake-up; return every channel heard since."""
        woken: set[str] = set()
        with wrap_unavailable():
            if not self.subscribed:
                await self.pubsub.subscribe(*self.channels)
                self.subscribed = True
            message = await self.pubsub.get_message(timeout=timeout_s)
            while message is not None:
                if message["type"] == "message":
                    woken.add(message["channel"].decode())
                message = await self.pubsub.get_message(timeout=0)
        return woken

    async def close(self) -> None:
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
