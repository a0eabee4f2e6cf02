"""Shared helpers for the UDP tests (datagram endpoint and UDP proxy).

Every socket is on 127.0.0.1 or ::1 with an ephemeral port, and every wait
is bounded by :data:`adapter_support.WAIT`.

"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Callable, Optional

from support.net import LOOPBACKS
from adapter_support import WAIT

#: Parameters for the two IP families, by loopback address.
HOSTS = LOOPBACKS


class Peer(asyncio.DatagramProtocol):
    """A plain UDP socket for a test: what it receives goes in a queue."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))

    @property
    def address(self) -> tuple[Any, ...]:
        """The peer's own address."""
        assert self.transport is not None
        return tuple(self.transport.get_extra_info('sockname'))

    def send(self, data: bytes, addr: Any) -> None:
        """Send one datagram (empty ones too, which asyncio's transports
        skip before Python 3.13)."""
        self.sock.sendto(data, addr)

    async def receive(self, timeout: float = WAIT) -> tuple[bytes, Any]:
        """The next datagram and its sender (fails after ``timeout``)."""
        return await asyncio.wait_for(self.received.get(), timeout)

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()


async def peer(host: str) -> Peer:
    """A new :class:`Peer` bound to ``host`` on an ephemeral port."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family(host), socket.SOCK_DGRAM)
    sock.bind((host, 0))
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Peer(sock), sock=sock)
    return protocol


async def until(condition: Callable[[], bool], timeout: float = WAIT,
                what: str = 'condition') -> None:
    """Wait (polling, bounded by ``timeout``) until ``condition()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'{what} not reached within {timeout} s')
        await asyncio.sleep(0.005)


def family(host: str) -> socket.AddressFamily:
    """The address family of a loopback address."""
    return socket.AF_INET6 if ':' in host else socket.AF_INET
