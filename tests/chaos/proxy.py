"""A TCP proxy between Sluice's processes and redis-server that breaks their connections.

It runs on the test's event loop. Clients connect to `url`; each connection is
piped to Redis until the test cuts it: `reset` ends every open connection with a
RST, `refuse` closes the listening socket (a connect gets ECONNREFUSED) until
`heal`, and `black_hole` keeps accepting but drops what flows, both ways or the
replies only (the requests still reach Redis: a write happens and its client
never hears of it, the case a publisher must call unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Hole = Literal["none", "both", "replies"]


class Proxy:
    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = 0
        self.hole: Hole = "none"
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Listen (again, on the same port after `refuse`)."""
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def reset(self) -> None:
        """End every open connection with a RST, as a restarted firewall or NAT does."""
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends a RST instead of a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones go on."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def black_hole(self, hole: Hole = "both") -> None:
        """Keep connections (and accept new ones) but drop their traffic."""
        self.hole = hole

    async def heal(self) -> None:
        self.hole = "none"
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        self.refuse()
        self.reset()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, redis_w}
        pipes = [
            asyncio.create_task(self._pipe(client_r, redis_w, replies=False)),
            asyncio.create_task(self._pipe(redis_r, client_w, replies=True)),
        ]
        self._pipes.update(pipes)
        try:
            # When either side ends, both do (a half-open pipe would hang its client).
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._pipes.discard(pipe)
            for writer in (client_w, redis_w):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.hole == "both" or (self.hole == "replies" and replies):
                    continue  # swallowed
                writer.write(data)
                await writer.drain()
