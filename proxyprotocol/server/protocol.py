"""The proxy as asyncio protocols: 0.11's ``DownstreamProtocol`` and
``UpstreamProtocol`` (and, in :mod:`proxyprotocol.server.legacy`, 0.4's
``Server`` and ``Client``).

``proxyprotocol-server`` itself runs on :mod:`proxyprotocol.server.relay`,
which owns its sockets. These classes are for code that builds a proxy from
asyncio protocols, as 0.4 and 0.11 did: pass a factory to
``loop.create_server``. They keep the 0.11 constructors and attributes, with
0.11's faults fixed:

* no buffer per connection: reads go into one buffer shared by the process
  (0.11 allocated ``buf_len`` bytes twice per connection);
* backpressure: when one side's transport asks to pause writing, the other
  side stops reading until it resumes (0.11 queued without bound), and the
  client is not read at all until the destination is connected;
* half-close: an end of stream on one side is passed on with
  ``write_eof()`` (or a close, for TLS), and the connection closes once both
  sides have ended;
* the DNSBL lookup cannot leave the destination without a header: a failed
  lookup counts as "not listed".

"""

from __future__ import annotations

import asyncio
import logging
from asyncio import AbstractEventLoop, BaseTransport, Transport
from typing import Any, Final, Optional, Type, cast
from uuid import uuid4

from ..base import ProxyProtocol
from ..build import build_transport_result
from ..result import ProxyResult
from ..sock import SocketInfo, SocketInfoLocal
from .address import Address

__all__ = ['DownstreamProtocol', 'UpstreamProtocol', 'RelayProtocol']

_log = logging.getLogger('proxyprotocol.server.protocol')

_SHARED_SIZE: Final = 65536
_shared = bytearray(_SHARED_SIZE)
_shared_view = memoryview(_shared)


class RelayProtocol(asyncio.BufferedProtocol):
    """One side of a proxied connection; :attr:`peer` is the other side.

    Args:
        buf_len: The most bytes read at once (kept for the 0.4/0.11
            signature; nothing of this size is allocated per connection).

    """

    def __init__(self, buf_len: int) -> None:
        super().__init__()
        self.buf_len = max(1, min(buf_len, _SHARED_SIZE))
        self.peer: Optional[RelayProtocol] = None
        self._transport: Optional[Transport] = None
        self._sock_info: Optional[SocketInfo] = None
        self._queue: list[bytes] = []
        self._held: list[bytes] = []
        self._held_size = 0
        self._paused = False
        self._eof = False
        self._closed = False

    @property
    def transport(self) -> Transport:
        """The transport (once connected)."""
        transport = self._transport
        assert transport is not None
        return transport

    @property
    def connected(self) -> bool:
        """Whether the transport is there and open."""
        return self._transport is not None

    @property
    def sock_info(self) -> SocketInfo:
        """This side's socket, as 0.11 described it (with a random
        unique id)."""
        sock_info = self._sock_info
        assert sock_info is not None
        return sock_info

    @property
    def sock(self) -> Any:
        """The socket (0.4)."""
        return self.transport.get_extra_info('socket')

    # -- writing to this side ----------------------------------------------

    def write(self, data: Any) -> None:
        """Send ``data`` to this side, or keep it until connected."""
        transport = self._transport
        if transport is None or self._queue:
            self._queue.append(bytes(data))
            if transport is not None:
                self._drain()
            return
        transport.write(bytes(data))

    def _drain(self) -> None:
        transport = self._transport
        if transport is None:
            return
        queue, self._queue = self._queue, []
        for data in queue:
            transport.write(data)

    def write_eof(self) -> None:
        """Pass on the other side's end of stream."""
        transport = self._transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def close(self) -> None:
        """Close this side and the other."""
        if self._closed:
            return
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        peer = self.peer
        if peer is not None:
            peer.close()

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: BaseTransport) -> None:
        # Any transport with write/pause_reading... (uvloop's are not
        # asyncio.Transport subclasses).
        self._transport = cast(Transport, transport)
        self._sock_info = SocketInfoLocal(transport, unique_id=uuid4().bytes)
        self._drain()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None
        self.close()

    def pause_writing(self) -> None:
        # This side is slow: stop reading the other.
        self._paused = True
        peer = self.peer
        if peer is not None and peer._transport is not None:
            peer._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        peer = self.peer
        if peer is not None and peer._transport is not None \
                and not peer._eof:
            peer._transport.resume_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _shared_view[:self.buf_len]

    def buffer_updated(self, nbytes: int) -> None:
        # Copied: a transport may keep what it cannot send at once.
        self.proxy_data(bytes(_shared_view[:nbytes]))

    def proxy_data(self, data: bytes) -> None:
        """Bytes read from this side: for the other side (kept until it is
        there; reading stops when they reach ``2 * buf_len``)."""
        peer = self.peer
        if peer is not None:
            peer.write(data)
            return
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size >= 2 * self.buf_len and self._transport is not None:
            self._transport.pause_reading()

    def attach(self, peer: RelayProtocol) -> None:
        """The other side is there: pass it what was read meanwhile."""
        self.peer = peer
        held, self._held, self._held_size = self._held, [], 0
        for data in held:
            peer.write(data)

    def eof_received(self) -> bool:
        self._eof = True
        peer = self.peer
        if peer is not None:
            if peer._eof:
                self.close()
                return False
            peer.write_eof()
        return True


class DownstreamProtocol(RelayProtocol):
    """The client side (0.11's name: *downstream* is the client).

    Args:
        upstream_protocol: The destination side's class.
        loop: The event loop.
        buf_len: See :class:`RelayProtocol`.
        dnsbl: A :class:`~proxyprotocol.dnsbl.Dnsbl` (or None): its answer
            for the client goes into the header (0.11 extension TLV).
        upstream: Where to connect; its ``?pp=`` picks the header.

    """

    def __init__(self, upstream_protocol: Type[UpstreamProtocol],
                 loop: AbstractEventLoop, buf_len: int, dnsbl: Any,
                 upstream: Address) -> None:
        super().__init__(buf_len)
        self.loop: Final = loop
        self.dnsbl: Final = dnsbl
        self.upstream: Final = upstream
        #: 16 random bytes: the UNIQUE_ID TLV of the header.
        self.id: Final = uuid4().bytes
        self._upstream_protocol = upstream_protocol
        self._task: Optional[asyncio.Task[None]] = None

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        # Nothing is read until the destination is there: no queue grows.
        self.transport.pause_reading()
        _log.info('[%s] Downstream connection received: %s', self.id.hex(),
                  self.sock_info)
        self._task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        dnsbl: Optional[str] = None
        if self.dnsbl is not None:
            try:
                dnsbl = await self.dnsbl.lookup(self.sock_info)
            except Exception:   # a lookup never stops the connection
                dnsbl = None
        upstream = self.upstream
        try:
            _, protocol = await self.loop.create_connection(
                lambda: self._upstream_protocol(self, self.buf_len,
                                                upstream.pp),
                upstream.host, upstream.port or 0, ssl=upstream.ssl)
        except OSError as exc:
            _log.error('[%s] Connection failed: %s: %s', self.id.hex(),
                       upstream, exc)
            self.close()
            return
        if self._closed:
            protocol.close()
            return
        assert isinstance(protocol, UpstreamProtocol)
        result = build_transport_result(self.transport, unique_id=self.id,
                                        dnsbl=dnsbl)
        protocol.write_header(dnsbl, result)
        # Python 3.10 starts reading even when connection_made paused it:
        # what came meanwhile follows the header.
        self.attach(protocol)
        if self._eof:
            protocol.write_eof()
        else:
            self.transport.resume_reading()

    def close(self) -> None:
        task = self._task
        if task is not None and not task.done() and \
                task is not asyncio.current_task():
            task.cancel()
        super().close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        super().connection_lost(exc)
        _log.info('[%s] Downstream connection closed', self.id.hex())


class UpstreamProtocol(RelayProtocol):
    """The destination side; writes the header first.

    Args:
        downstream: The client side.
        buf_len: See :class:`RelayProtocol`.
        pp: The header to send.

    """

    def __init__(self, downstream: DownstreamProtocol, buf_len: int,
                 pp: ProxyProtocol) -> None:
        super().__init__(buf_len)
        self.pp: Final = pp
        self.downstream: Final = downstream
        self.peer = downstream

    def build_pp_header(self, dnsbl: Optional[str],
                        result: ProxyResult) -> bytes:
        """The header: from the live client connection when it is still
        there, else from ``result``."""
        if self.downstream.connected:
            result = build_transport_result(self.downstream.transport,
                                            unique_id=self.downstream.id,
                                            dnsbl=dnsbl)
        return self.pp.pack(result)

    def write_header(self, dnsbl: Optional[str], result: ProxyResult) -> None:
        """Send the header (before any data)."""
        header = self.build_pp_header(dnsbl, result)
        if header:
            self.write(header)
