"""A TCP relay in front of the receiver that goes down now and then: real "connection refused".

The ``legacy-erp`` webhook points at this relay. While up, it forwards bytes both ways to the
receiver; while down, nothing listens on its port (and open connections are cut), so a delivery
fails the way it does against a crashed server: ``dial tcp 127.0.0.1:PORT: connect: connection refused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket

__all__ = ["FlappingRelay"]


class FlappingRelay:
    """Relay ``host:port`` -> ``host:target_port``, up for ``up_s`` seconds, then down for ``down_s``."""

    def __init__(
        self,
        sock: socket.socket,
        target_port: int,
        *,
        seed: int,
        up_s: tuple[float, float] = (60.0, 150.0),
        down_s: tuple[float, float] = (10.0, 25.0),
    ) -> None:
        # Accepted connections inherit SO_REUSEADDR: without it the port cannot be bound again
        # while connections of the previous "up" period linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._first_sock: socket.socket | None = sock
        self.host, self.port = sock.getsockname()[:2]
        self._target_port = target_port
        self._rng = random.Random(f"{seed}:relay")
        self._up_s, self._down_s = up_s, down_s
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.is_up = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection(self.host, self._target_port)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, target_w))
        pipes = [
            asyncio.ensure_future(self._pipe(client_r, target_w)),
            asyncio.ensure_future(self._pipe(target_r, client_w)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            self._writers.difference_update((client_w, target_w))

    async def up(self) -> None:
        """Start listening (on the original socket the first time, then on the same port)."""
        if self._server is not None:
            return
        if self._first_sock is not None:
            sock, self._first_sock = self._first_sock, None
            self._server = await asyncio.start_server(self._handle, sock=sock)
        else:
            self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.is_up = True

    async def down(self) -> None:
        """Stop listening and cut every open connection."""
        self.is_up = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        if self._pipes:
            await asyncio.gather(*self._pipes, return_exceptions=True)

    async def run(self) -> None:
        """Flap forever: up, then down, with random durations. Cancel to stop (then call down())."""
        while True:
            try:
                await self.up()
            except OSError:  # the port is briefly unavailable: stay down a little longer
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(self._rng.uniform(*self._up_s))
            await self.down()
            await asyncio.sleep(self._rng.uniform(*self._down_s))
