"""anyio (and so trio) byte streams behind the PROXY protocol.

Read the header from a stream you accepted; the stream you get back yields
the bytes that followed the header first, then the rest::

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            stream = await receive_proxy_header(stream, config)
        except ProxyProtocolError:
            await anyio.aclose_forcefully(stream)
            return
        stream.extra(anyio.abc.SocketAttribute.remote_address)  # the client

Or wrap a listener, so handlers only ever see connections that passed::

    listener = ProxyProtocolListener(await anyio.create_tcp_listener(
        local_port=8080), HeaderConfig(trusted=['10.0.0.0/8']))
    await listener.serve(handle)

The returned :class:`ProxiedByteStream` answers anyio's
``SocketAttribute.remote_address`` / ``remote_port`` / ``local_address`` /
``local_port`` / ``family`` from the header, and
:class:`ProxyProtocolAttribute` gives the header itself and the real (proxy)
addresses. This works the same under trio: anyio's functions run inside
``trio.run`` (or ``anyio.run(..., backend='trio')``).

TLS after the header: put anyio's ``TLSListener`` around the
:class:`ProxyProtocolListener` (or ``TLSStream.wrap`` the proxied stream):
the TLS layer reads the handshake bytes that came with the header from the
proxied stream, so nothing is lost.

"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import anyio
from anyio import TypedAttributeSet, typed_attribute
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup
from anyio.lowlevel import checkpoint

from ..acceptor import ConnectionInfo, HeaderAcceptor
from ..errors import ProxyProtocolError
from ..policy import DEFAULT_CONFIG, HeaderConfig
from ..result import ProxyResult
from ..tlv import ProxyProtocolTLV
from ._common import two_tuple

__all__ = ['ProxyProtocolAttribute', 'ProxiedByteStream',
           'ProxyProtocolListener', 'receive_proxy_header', 'DropCallback']

#: ``on_drop(socket_peername, exception)``: a connection was dropped before
#: the handler saw it.
DropCallback = Callable[[Any, BaseException], None]

_RECEIVE_SIZE = 65536

_log = logging.getLogger(__name__)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


class ProxyProtocolAttribute(TypedAttributeSet):
    """What :class:`ProxiedByteStream` adds to anyio's typed attributes."""

    #: The connection's :class:`~proxyprotocol.acceptor.ConnectionInfo`.
    info: ConnectionInfo = typed_attribute()
    #: The header's :class:`~proxyprotocol.result.ProxyResult`, or None.
    result: Optional[ProxyResult] = typed_attribute()
    #: The header's TLVs (empty when none).
    tlv: ProxyProtocolTLV = typed_attribute()
    #: The real peer of the socket (the proxy), as anyio gave it.
    socket_remote_address: Any = typed_attribute()
    #: The real local address of the socket.
    socket_local_address: Any = typed_attribute()


class ProxiedByteStream(ByteStream):
    """A byte stream after its PROXY header: the bytes that came with the
    header first, then the wrapped stream's.

    Args:
        stream: The stream the header was read from.
        info: What the header said.
        leftover: The bytes received after the header.

    """

    def __init__(self, stream: ByteStream, info: ConnectionInfo,
                 leftover: bytes = b'') -> None:
        self._stream = stream
        self._info = info
        self._leftover = leftover

    @property
    def info(self) -> ConnectionInfo:
        """The connection's information."""
        return self._info

    @property
    def transport_stream(self) -> ByteStream:
        """The wrapped stream."""
        return self._stream

    async def receive(self, max_bytes: int = _RECEIVE_SIZE) -> bytes:
        leftover = self._leftover
        if leftover:
            await checkpoint()
            self._leftover = leftover[max_bytes:]
            return leftover[:max_bytes]
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        self._leftover = b''
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        info = self._info
        attributes: dict[Any, Callable[[], Any]] = {
            **self._stream.extra_attributes,
            ProxyProtocolAttribute.info: _constant(info),
            ProxyProtocolAttribute.result: _constant(info.result),
            ProxyProtocolAttribute.tlv: _constant(info.tlv),
            ProxyProtocolAttribute.socket_remote_address:
                _constant(info.socket_peername),
            ProxyProtocolAttribute.socket_local_address:
                _constant(info.socket_sockname),
        }
        if info.proxied:
            peer = two_tuple(info.peername)
            local = two_tuple(info.sockname)
            attributes[SocketAttribute.remote_address] = _constant(peer)
            attributes[SocketAttribute.local_address] = _constant(local)
            attributes[SocketAttribute.family] = _constant(info.family)
            for key, address in ((SocketAttribute.remote_port, peer),
                                 (SocketAttribute.local_port, local)):
                if isinstance(address, tuple):
                    attributes[key] = _constant(address[1])
                else:
                    attributes.pop(key, None)
        return attributes


async def receive_proxy_header(stream: ByteStream,
                               config: HeaderConfig = DEFAULT_CONFIG
                               ) -> ProxiedByteStream:
    """Read the PROXY header from ``stream``, by the policy for its real
    peer (anyio's ``SocketAttribute.remote_address``; a stream without one
    is untrusted).

    The whole header must arrive within ``config.timeout``. On failure
    nothing is closed: the caller closes the stream.

    Returns:
        The stream after the header, which yields the bytes received after
        it first.

    Raises:
        ProxyProtocolRejectedError: The policy refuses this peer.
        ProxyProtocolTimeoutError: The header did not arrive in time.
        ProxyProtocolEOFError: The stream ended (or broke) before the
            header did.
        ProxyProtocolError: The header is invalid.

    """
    acceptor = HeaderAcceptor(
        config,
        socket_peername=stream.extra(SocketAttribute.remote_address, None),
        socket_sockname=stream.extra(SocketAttribute.local_address, None),
        socket_family=stream.extra(SocketAttribute.family, None))
    info = acceptor.start()
    if info is None:
        try:
            with anyio.fail_after(config.timeout):
                info = await _receive(stream, acceptor)
        except TimeoutError:
            if acceptor.info is not None:  # pragma: no cover - a race
                info = acceptor.info
            else:
                raise acceptor.timeout_error() from None
    return ProxiedByteStream(stream, info, acceptor.trailing_data)


async def _receive(stream: ByteStream,
                   acceptor: HeaderAcceptor) -> ConnectionInfo:
    while True:
        try:
            data = await stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError,
                ConnectionError):
            acceptor.feed_eof()
            raise  # pragma: no cover - feed_eof raised
        outcome = acceptor.feed(data)
        if isinstance(outcome, ConnectionInfo):
            return outcome


class ProxyProtocolListener(Listener[ProxiedByteStream]):
    """A listener whose handlers get streams after a valid PROXY header.

    Connections that are refused, time out, send an invalid header or end
    before it are closed, and the handler never sees them.

    Args:
        listener: The listener to wrap (e.g. from
            ``anyio.create_tcp_listener``).
        config: Trusted proxies, policies, timeout, size cap.
        on_drop: Called as ``on_drop(socket_peername, exception)`` for each
            connection dropped before the handler saw it.

    """

    def __init__(self, listener: Listener[Any],
                 config: HeaderConfig = DEFAULT_CONFIG, *,
                 on_drop: Optional[DropCallback] = None) -> None:
        self.listener = listener
        self.config = config
        self.on_drop = on_drop

    async def serve(self, handler: Callable[[ProxiedByteStream], Any],
                    task_group: Optional[TaskGroup] = None) -> None:
        config = self.config

        async def handle(stream: ByteStream) -> None:
            peer = stream.extra(SocketAttribute.remote_address, None)
            try:
                proxied = await receive_proxy_header(stream, config)
            except (ProxyProtocolError, OSError) as exc:
                await anyio.aclose_forcefully(stream)
                _log.debug('dropping connection from %r: %s', peer, exc)
                if self.on_drop is not None:
                    try:
                        self.on_drop(peer, exc)
                    except Exception:  # pragma: no cover - the hook's bug
                        _log.exception('on_drop callback failed')
                return
            await handler(proxied)

        await self.listener.serve(handle, task_group)

    async def aclose(self) -> None:
        await self.listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.listener.extra_attributes
