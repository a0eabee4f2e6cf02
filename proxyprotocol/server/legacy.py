"""0.4's proxy protocols: ``Server`` (the client side) and ``Client`` (the
destination side), for code that built a proxy from them::

    server = await loop.create_server(
        lambda: Server(ProxyProtocolV2(), loop, 65536, 'backend', 8080),
        'localhost', 10000)

They are :class:`~proxyprotocol.server.protocol.RelayProtocol` s, so they
share its fixes (no buffer per connection, backpressure, half-close), and
the header now names the transport protocol (0.4 sent an UNSPEC nibble, as
it read ``sock.proto``, which is 0 for TCP).

"""

from __future__ import annotations

import asyncio
import logging
from asyncio import AbstractEventLoop, BaseTransport
from socket import AddressFamily, SocketKind
from typing import Final, Optional

from ..base import ProxyProtocol
from ..sock import SocketInfo
from .protocol import RelayProtocol

__all__ = ['Server', 'Client']

_log = logging.getLogger('proxyprotocol.server')


class Server(RelayProtocol):
    """The client side of a proxied connection (0.4's name).

    Args:
        pp: The header to send to the destination.
        loop: The event loop.
        buf_len: The most bytes read at once.
        host: The destination's host.
        port: The destination's port.

    """

    def __init__(self, pp: ProxyProtocol, loop: AbstractEventLoop,
                 buf_len: int, host: str, port: int) -> None:
        super().__init__(buf_len)
        self.pp: Final = pp
        self.loop: Final = loop
        self.host: Final = host
        self.port: Final = port
        self._connect: Optional[asyncio.Task[None]] = None

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        # Nothing is read until the destination is there: no queue grows.
        self.transport.pause_reading()
        _log.info('Upstream connection received: %s', SocketInfo(transport))
        self._connect = self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            _, client = await self.loop.create_connection(
                lambda: Client(self), self.host, self.port)
        except OSError as exc:
            _log.error('Downstream connection failed: %s:%s: %s',
                       self.host, self.port, exc)
            self.close()
            return
        if self._closed:
            client.close()
            return
        if self._eof:
            client.write_eof()
        else:
            self.transport.resume_reading()

    def close(self) -> None:
        task = self._connect
        if task is not None and not task.done() and \
                task is not asyncio.current_task():
            task.cancel()
        super().close()


class Client(RelayProtocol):
    """The destination side (0.4's name); sends the header first.

    Args:
        server: The client side it serves.

    """

    def __init__(self, server: Server) -> None:
        super().__init__(server.buf_len)
        self.pp: Final = server.pp
        self.server: Final = server
        self.peer = server

    def build_pp_header(self) -> bytes:
        """The header for the client side's socket."""
        sock = self.server.sock
        return self.pp.build(sock.getpeername(), sock.getsockname(),
                             family=AddressFamily(sock.family),
                             protocol=SocketKind(sock.type))

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        header = self.build_pp_header()
        if header:
            self.write(header)
        # What the client sent meanwhile follows the header.
        self.server.attach(self)
