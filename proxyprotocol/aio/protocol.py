"""asyncio protocols: read the PROXY header before the application sees
the connection.

Wrap any protocol factory for :meth:`loop.create_server
<asyncio.loop.create_server>` or :meth:`~asyncio.loop.create_unix_server`::

    server = await loop.create_server(
        wrap_protocol_factory(MyProtocol, HeaderConfig(trusted=['10.0.0.0/8'])),
        '0.0.0.0', 8080)

For each connection a :class:`HeaderProtocol` applies the policy chosen from
the real peer, reads the header under the timeout and size cap, and only
then creates the application's protocol and calls its ``connection_made``
with a :class:`ProxiedTransport`. Connections that are refused, time out,
send an invalid header or end before it is whole are closed at once, and
the application never hears of them.

The :class:`ProxiedTransport`'s ``get_extra_info`` answers:

=====================  ======================================================
``'peername'``         the client: from the header when it gave addresses,
                       else the real peer
``'sockname'``         the address the client connected to, likewise
``'socket_peername'``  the real peer of the socket (the proxy)
``'socket_sockname'``  the real local address of the socket
``'proxy_info'``       the :class:`~proxyprotocol.acceptor.ConnectionInfo`
``'proxy_result'``     the header's :class:`~proxyprotocol.result.ProxyResult`,
                       or None when no header was read
``'proxy_header'``     the :class:`~proxyprotocol.header.ParsedHeader`, or None
``'proxy_tlv'``        the header's TLVs (empty when none)
``'socket'``           when the header gave addresses, a
                       :class:`~proxyprotocol.aio.sockview.ProxiedSocket`:
                       a view of the socket whose ``getpeername()``,
                       ``getsockname()`` and ``family`` are the header's,
                       and whose options and descriptor are the real
                       socket's; else the real socket
``'socket_real'``      the real socket, always (its ``getpeername()``
                       names the proxy)
TLS entries            with ``ssl=``: ``'ssl_object'``, ``'sslcontext'``,
                       ``'peercert'``, ``'cipher'``, ``'compression'``
anything else          the real transport's
=====================  ======================================================

The ``'socket'`` view is there because servers such as uvicorn read the
client from ``get_extra_info('socket').getpeername()`` rather than from
``'peername'``: with the real socket, the proxy's address would leak into
the application as the client's.

The bytes that came after the header are the application's first data, for
:class:`asyncio.Protocol` and :class:`asyncio.BufferedProtocol` alike;
``set_protocol`` switches protocols (upgrades) and flow control passes
through. With ``ssl=``, TLS starts right after the header on the same
connection, and the handshake bytes that arrived with the header are used,
not lost (see :mod:`proxyprotocol.aio.tls`).

"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, Callable, Optional, Union, cast

from ..acceptor import ConnectionInfo, HeaderAcceptor
from ..errors import ProxyProtocolError
from ..header import ParsedHeader
from ..policy import DEFAULT_CONFIG, HeaderConfig
from .sockview import ProxiedSocket
from .tls import DEFAULT_HANDSHAKE_TIMEOUT, TLSLayer

__all__ = ['HeaderProtocol', 'ProxiedTransport', 'wrap_protocol_factory',
           'ProtocolFactory', 'DropCallback']

_log = logging.getLogger(__name__)

#: A factory of application protocols, as ``loop.create_server`` takes.
ProtocolFactory = Callable[[], asyncio.BaseProtocol]

#: ``on_drop(socket_peername, exception)``: a connection was dropped before
#: the application saw it.
DropCallback = Callable[[Any, BaseException], None]

_HEADER_BUFFER = 4096
_DATA_BUFFER = 65536

# Connection states.
_HEADER, _HANDSHAKE, _OPEN, _CLOSED = range(4)


class HeaderProtocol(asyncio.BufferedProtocol):
    """The protocol the event loop sees: header first, then the application.

    Args:
        app_factory: Makes the application's protocol, once the header is
            read (and TLS is up).
        config: Who must send a header, timeout, size cap.
        ssl: Start TLS (server side) right after the header.
        ssl_handshake_timeout: Seconds allowed for that handshake.
        on_drop: Called as ``on_drop(socket_peername, exception)`` when a
            connection is dropped before the application saw it (refused,
            timed out, invalid header, TLS failure...), e.g. to log it.

    """

    def __init__(self, app_factory: ProtocolFactory,
                 config: HeaderConfig = DEFAULT_CONFIG, *,
                 ssl: Optional[_ssl.SSLContext] = None,
                 ssl_handshake_timeout: Optional[float] = None,
                 on_drop: Optional[DropCallback] = None) -> None:
        self._on_drop = on_drop
        self._factory = app_factory
        self._config = config
        self._ssl = ssl
        self._handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT \
            if ssl_handshake_timeout is None else ssl_handshake_timeout
        self._state = _HEADER
        self._transport: Optional[asyncio.Transport] = None
        self._acceptor: Optional[HeaderAcceptor] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._info: Optional[ConnectionInfo] = None
        self._tls: Optional[TLSLayer] = None
        self._app: Optional[asyncio.BaseProtocol] = None
        self._proxied: Optional[ProxiedTransport] = None
        self._sockview: Optional[ProxiedSocket] = None
        self._buffer = memoryview(bytearray(_HEADER_BUFFER))
        self._lent: Optional[tuple[asyncio.BufferedProtocol, Any]] = None
        self._pending = bytearray()
        self._eof_pending = False
        self._paused = False
        self._flush_scheduled = False
        self._closing = False
        self._error: Optional[BaseException] = None

    # Information

    @property
    def info(self) -> Optional[ConnectionInfo]:
        """The connection's information, once the header is read."""
        return self._info

    @property
    def error(self) -> Optional[BaseException]:
        """Why the connection was dropped before the application saw it."""
        return self._error

    @property
    def app_protocol(self) -> Optional[asyncio.BaseProtocol]:
        """The application's protocol, once created."""
        return self._app

    # Events from the event loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info('socket')
        family = getattr(sock, 'family', None)
        acceptor = self._acceptor = HeaderAcceptor(
            self._config,
            socket_peername=transport.get_extra_info('peername'),
            socket_sockname=transport.get_extra_info('sockname'),
            socket_family=family)
        try:
            info = acceptor.start()
        except ProxyProtocolError as exc:
            self._fail(exc)
            return
        if info is not None:
            self._header_done(info, b'')
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._config.timeout, self._on_timeout)

    def get_buffer(self, sizehint: int) -> Any:
        state = self._state
        if state == _OPEN and self._tls is None and not self._pending:
            app = self._app
            if isinstance(app, asyncio.BufferedProtocol):
                buf = app.get_buffer(sizehint)
                self._lent = (app, buf)
                return buf
        if state != _HEADER and len(self._buffer) < _DATA_BUFFER:
            self._buffer = memoryview(bytearray(_DATA_BUFFER))
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        lent, self._lent = self._lent, None
        if lent is not None:
            app, buf = lent
            if app is self._app and self._state == _OPEN:
                app.buffer_updated(nbytes)
                return
            data = bytes(memoryview(buf)[:nbytes])
        else:
            data = bytes(self._buffer[:nbytes])
        self._data_received(data)

    def _data_received(self, data: bytes) -> None:
        state = self._state
        if state == _OPEN and self._tls is None:
            self._deliver(data)
        elif state == _HEADER:
            self._header_received(data)
        elif state in (_HANDSHAKE, _OPEN):
            tls = self._tls
            assert tls is not None
            tls.receive(data)
            self._tls_pump()

    def eof_received(self) -> Optional[bool]:
        state = self._state
        if state == _HEADER:
            acceptor = self._acceptor
            assert acceptor is not None
            try:
                acceptor.feed_eof()
            except ProxyProtocolError as exc:
                self._fail(exc)
            return False
        if state == _HANDSHAKE:
            self._fail(ConnectionResetError(
                'the connection ended during the TLS handshake'))
            return False
        if state != _OPEN:
            return False
        if self._tls is not None:
            # TCP end of stream: no more ciphertext can come. Hand over what
            # is decrypted, then end as asyncio's TLS does (close).
            self._eof_pending = True
            self._tls_read()
            return True
        if self._pending:
            self._eof_pending = True
            return True
        return self._app_eof()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._cancel_timer()
        self._state = _CLOSED
        app = self._app
        if app is not None and self._proxied is not None:
            self._app = None
            error = self._error
            if exc is None and isinstance(error, Exception):
                exc = error
            app.connection_lost(exc)
        self._transport = None

    def pause_writing(self) -> None:
        app = self._app
        if app is not None and self._proxied is not None:
            app.pause_writing()

    def resume_writing(self) -> None:
        app = self._app
        if app is not None and self._proxied is not None:
            app.resume_writing()

    # The header

    def _header_received(self, data: bytes) -> None:
        acceptor = self._acceptor
        assert acceptor is not None
        try:
            outcome = acceptor.feed(data)
        except ProxyProtocolError as exc:
            self._fail(exc)
            return
        if isinstance(outcome, ConnectionInfo):
            self._header_done(outcome, acceptor.trailing_data)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._state == _HEADER:
            acceptor = self._acceptor
            assert acceptor is not None
            self._fail(acceptor.timeout_error())
        elif self._state == _HANDSHAKE:
            self._fail(TimeoutError(
                f'TLS handshake not complete within '
                f'{self._handshake_timeout:g} s'))

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _fail(self, exc: BaseException) -> None:
        self._cancel_timer()
        self._error = exc
        peer = self._info.socket_peername if self._info is not None else (
            self._transport.get_extra_info('peername')
            if self._transport is not None else None)
        _log.debug('dropping connection from %r: %s', peer, exc)
        if self._on_drop is not None and self._proxied is None:
            try:
                self._on_drop(peer, exc)
            except Exception:  # pragma: no cover - the hook's own bug
                _log.exception('on_drop callback failed')
        transport = self._transport
        if self._state != _OPEN:
            self._state = _CLOSED
        if transport is not None:
            if self._tls is not None:
                self._flush_tls()
            transport.abort()

    def _header_done(self, info: ConnectionInfo, trailing: bytes) -> None:
        self._cancel_timer()
        self._info = info
        if self._ssl is not None:
            self._state = _HANDSHAKE
            self._tls = TLSLayer(self._ssl, server_side=True)
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._handshake_timeout,
                                          self._on_timeout)
            if trailing:
                self._tls.receive(trailing)
            self._tls_pump()
            return
        self._connect_app()
        if trailing and self._state == _OPEN:
            self._deliver(trailing)

    def _connect_app(self) -> None:
        self._state = _OPEN
        app = self._app = self._factory()
        proxied = self._proxied = ProxiedTransport(self)
        app.connection_made(proxied)

    # TLS

    def _tls_pump(self) -> None:
        tls = self._tls
        assert tls is not None
        if not tls.handshake_done:
            try:
                done = tls.do_handshake()
            except _ssl.SSLError as exc:
                self._fail(exc)
                return
            self._flush_tls()
            if not done:
                return
            self._cancel_timer()
            self._connect_app()
        self._tls_read()

    def _tls_read(self) -> None:
        tls = self._tls
        assert tls is not None
        while not self._paused and self._state == _OPEN \
                and not self._closing:
            try:
                chunk = tls.read()
            except _ssl.SSLError as exc:
                self._fail(exc)
                return
            if chunk is None:
                break
            if not chunk:
                self._eof_pending = True
                break
            self._feed_app(chunk)
        self._flush_tls()
        if self._eof_pending and not self._paused and self._state == _OPEN:
            self._eof_pending = False
            self._app_eof()
            self._close()

    def _flush_tls(self) -> None:
        tls, transport = self._tls, self._transport
        if tls is None or transport is None:
            return
        data = tls.outgoing()
        if data and not transport.is_closing():
            transport.write(data)

    # Delivery to the application

    def _deliver(self, data: bytes) -> None:
        if self._closing:
            return  # closed by the application: no more data for it
        if self._paused or self._pending:
            self._pending += data
        else:
            self._feed_app(data)

    def _feed_app(self, data: bytes) -> None:
        app = self._app
        if isinstance(app, asyncio.BufferedProtocol):
            view = memoryview(data)
            while view:
                if self._paused or self._app is not app:
                    self._pending[:0] = view
                    return
                buf = app.get_buffer(len(view))
                target = memoryview(buf).cast('B')
                size = min(len(target), len(view))
                if not size:
                    raise RuntimeError('get_buffer() returned an empty buffer')
                target[:size] = view[:size]
                view = view[size:]
                app.buffer_updated(size)
        elif isinstance(app, asyncio.Protocol):
            app.data_received(data)
        else:
            raise TypeError(f'{app!r} cannot receive data')

    def _app_eof(self) -> Optional[bool]:
        app = self._app
        if isinstance(app, (asyncio.Protocol, asyncio.BufferedProtocol)):
            return app.eof_received()
        return None

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        if self._state != _OPEN or self._paused:
            return
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._feed_app(data)
        if self._tls is not None:
            self._tls_read()
            return
        if self._eof_pending and not self._pending and not self._paused:
            self._eof_pending = False
            if not self._app_eof():
                self._close()

    # Operations of the ProxiedTransport

    def _write(self, data: Any) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        tls = self._tls
        if tls is None:
            transport.write(data)
            return
        tls.write(data)
        self._flush_tls()

    def _pause_reading(self) -> None:
        if self._paused:
            return
        self._paused = True
        transport = self._transport
        if transport is not None and transport.is_reading():
            transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
        if not self._flush_scheduled and (
                self._pending or self._eof_pending or self._tls is not None):
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_pending)

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        tls = self._tls
        if tls is not None:
            tls.unwrap()
            self._flush_tls()
        transport.close()

    def _abort(self) -> None:
        self._closing = True
        transport = self._transport
        if transport is not None:
            transport.abort()

    def _extra_info(self, name: str, default: Any) -> Any:
        info = self._info
        if info is not None:
            if name == 'peername':
                return info.peername
            if name == 'sockname':
                return info.sockname
            if name == 'socket_peername':
                return info.socket_peername
            if name == 'socket_sockname':
                return info.socket_sockname
            if name == 'proxy_info':
                return info
            if name == 'proxy_result':
                return info.result
            if name == 'proxy_header':
                return info.header
            if name == 'proxy_tlv':
                return info.tlv
        tls = self._tls
        if tls is not None and TLSLayer.has_extra_info(name):
            return tls.extra_info(name, default)
        transport = self._transport
        if transport is None:
            return default
        if name == 'socket_real':
            return transport.get_extra_info('socket', default)
        if name == 'socket' and info is not None and info.proxied:
            view = self._sockview
            if view is None:
                sock = transport.get_extra_info('socket')
                if sock is None:
                    return default
                view = self._sockview = ProxiedSocket(sock, info)
            return view
        return transport.get_extra_info(name, default)


class ProxiedTransport(asyncio.Transport):
    """The transport the application sees.

    Addresses come from the header (see the table in
    :mod:`proxyprotocol.aio.protocol`); everything else passes through to
    the real transport, through TLS when it is on.

    """

    def __init__(self, owner: HeaderProtocol) -> None:
        super().__init__()
        self._owner = owner

    @property
    def info(self) -> ConnectionInfo:
        """The connection's information (also ``'proxy_info'``)."""
        info = self._owner.info
        assert info is not None
        return info

    @property
    def header(self) -> Optional[ParsedHeader]:
        """The header read, or None."""
        return self.info.header

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._owner._extra_info(name, default)

    def is_closing(self) -> bool:
        owner = self._owner
        transport = owner._transport
        return owner._closing or transport is None or transport.is_closing()

    def close(self) -> None:
        self._owner._close()

    def abort(self) -> None:
        self._owner._abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._owner._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        app = self._owner._app
        assert app is not None
        return app

    def is_reading(self) -> bool:
        owner = self._owner
        return not owner._paused and owner._state == _OPEN \
            and not self.is_closing()

    def pause_reading(self) -> None:
        self._owner._pause_reading()

    def resume_reading(self) -> None:
        self._owner._resume_reading()

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data: expecting a bytes-like instance, '
                            f'got {type(data).__name__}')
        if data:
            self._owner._write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b''.join(list_of_data))

    def write_eof(self) -> None:
        owner = self._owner
        if owner._tls is not None:
            raise NotImplementedError('TLS does not support half-closing')
        transport = owner._transport
        if transport is not None:
            transport.write_eof()

    def can_write_eof(self) -> bool:
        owner = self._owner
        transport = owner._transport
        return owner._tls is None and transport is not None \
            and transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        transport = self._owner._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        transport = self._owner._transport
        if transport is None:
            return (0, 0)
        limits: tuple[int, int] = transport.get_write_buffer_limits()
        return limits

    def set_write_buffer_limits(self, high: Optional[int] = None,
                                low: Optional[int] = None) -> None:
        transport = self._owner._transport
        if transport is not None:
            transport.set_write_buffer_limits(high, low)

    def __repr__(self) -> str:
        info = self._owner.info
        peer = None if info is None else info.peername
        return f'<ProxiedTransport peername={peer!r}>'


def wrap_protocol_factory(app_factory: ProtocolFactory,
                          config: HeaderConfig = DEFAULT_CONFIG, *,
                          ssl: Optional[_ssl.SSLContext] = None,
                          ssl_handshake_timeout: Optional[float] = None,
                          on_drop: Optional[DropCallback] = None
                          ) -> Callable[[], HeaderProtocol]:
    """A protocol factory for ``loop.create_server`` and
    ``loop.create_unix_server`` that reads the header first.

    Do not pass ``ssl=`` to ``create_server`` itself: the header comes
    before TLS. Pass it here.

    Args:
        app_factory: The application's protocol factory; called for each
            connection once the header is read (and TLS is up).
        config: Who must send a header, timeout, size cap.
        ssl: Start TLS (server side) right after the header.
        ssl_handshake_timeout: Seconds allowed for that handshake (60).
        on_drop: Called as ``on_drop(socket_peername, exception)`` for each
            connection dropped before the application saw it.

    """
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f'ssl must be an SSLContext, not {ssl!r}')

    def factory() -> HeaderProtocol:
        return HeaderProtocol(app_factory, config, ssl=ssl,
                              ssl_handshake_timeout=ssl_handshake_timeout,
                              on_drop=on_drop)
    return factory
