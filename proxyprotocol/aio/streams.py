"""asyncio streams: servers whose handlers start after the PROXY header.

:func:`start_server` and :func:`start_unix_server` are
:func:`asyncio.start_server` and :func:`asyncio.start_unix_server` with the
header read first (by :class:`~proxyprotocol.aio.protocol.HeaderProtocol`,
under the policy, timeout and size cap); the handler is called as
``handler(reader, writer, info)`` with the
:class:`~proxyprotocol.acceptor.ConnectionInfo`, and only for connections
that passed. ``writer.get_extra_info('peername')`` is the client the header
named; the real peer stays available as ``info.socket_peername``. With
``ssl=``, TLS starts after the header, without losing the handshake bytes
that came with it.

:func:`read_proxy_header` reads the header from a stream you already have,
e.g. inside a plain :func:`asyncio.start_server` handler; it reads exactly
the header's bytes, so the application's bytes stay in the reader.

"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from asyncio import StreamReader, StreamReaderProtocol, StreamWriter
from typing import Any, Awaitable, Callable, Optional, Union

from ..acceptor import ConnectionInfo, HeaderAcceptor
from ..policy import DEFAULT_CONFIG, HeaderConfig
from ..typing import StreamReaderProtocol as _Reader
from ..typing import TransportProtocol
from .protocol import DropCallback, HeaderProtocol, wrap_protocol_factory

__all__ = ['read_proxy_header', 'start_server', 'start_unix_server',
           'stream_protocol_factory', 'ConnectionHandler']

#: ``handler(reader, writer, info)``; a coroutine function, usually.
ConnectionHandler = Callable[[StreamReader, StreamWriter, ConnectionInfo],
                             Union[None, Awaitable[None]]]

_LIMIT = 2 ** 16


async def read_proxy_header(reader: _Reader, writer: TransportProtocol,
                            config: HeaderConfig = DEFAULT_CONFIG
                            ) -> ConnectionInfo:
    """Read the header from a stream, by the policy for its real peer.

    Reads exactly the header (``readexactly`` as the parser asks, a v1 line
    a byte at a time), so the bytes after it stay in ``reader``. The whole
    header must arrive within ``config.timeout``. On failure nothing is
    closed: the caller closes the connection.

    With :attr:`~proxyprotocol.policy.Policy.OPTIONAL` and no header, the
    few bytes read to find that out cannot be put back into the reader:
    they are in :attr:`ConnectionInfo.initial_data`.

    Args:
        reader: The stream, e.g. an :class:`asyncio.StreamReader`.
        writer: The stream's writer or transport (for the real addresses).
        config: The policy, timeout and size cap.

    Raises:
        ProxyProtocolRejectedError: The policy refuses this peer.
        ProxyProtocolTimeoutError: The header did not arrive in time.
        ProxyProtocolEOFError: The stream ended before the header did.
        ProxyProtocolError: The header is invalid.

    """
    sock = writer.get_extra_info('socket')
    acceptor = HeaderAcceptor(
        config, socket_peername=writer.get_extra_info('peername'),
        socket_sockname=writer.get_extra_info('sockname'),
        socket_family=getattr(sock, 'family', None))
    info = acceptor.start()
    if info is not None:
        return info
    try:
        return await asyncio.wait_for(_read(reader, acceptor),
                                      config.timeout)
    except asyncio.TimeoutError:
        raise acceptor.timeout_error() from None


async def _read(reader: _Reader, acceptor: HeaderAcceptor) -> ConnectionInfo:
    while True:
        want = acceptor.want
        size = want.want_bytes or 1
        try:
            data = await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            outcome = acceptor.feed(exc.partial)
            if isinstance(outcome, ConnectionInfo):
                return outcome
            acceptor.feed_eof()
            raise  # pragma: no cover - feed_eof raised
        except ConnectionError:
            acceptor.feed_eof()
            raise  # pragma: no cover - feed_eof raised
        outcome = acceptor.feed(data)
        if isinstance(outcome, ConnectionInfo):
            return outcome


class _Handlers:
    # Keeps the handler tasks referenced and reports their failures.

    def __init__(self, handler: ConnectionHandler) -> None:
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, reader: StreamReader, writer: StreamWriter) -> None:
        info = writer.get_extra_info('proxy_info')
        outcome = self.handler(reader, writer, info)
        if outcome is None:
            return
        task = asyncio.ensure_future(self._run(outcome, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _run(outcome: Awaitable[None], writer: StreamWriter) -> None:
        try:
            await outcome
        except Exception as exc:
            asyncio.get_running_loop().call_exception_handler({
                'message': 'Unhandled exception in PROXY protocol '
                           'connection handler',
                'exception': exc,
                'transport': writer.transport,
            })
            writer.close()


def stream_protocol_factory(handler: ConnectionHandler,
                            config: HeaderConfig = DEFAULT_CONFIG, *,
                            ssl: Optional[_ssl.SSLContext] = None,
                            ssl_handshake_timeout: Optional[float] = None,
                            limit: int = _LIMIT,
                            on_drop: Optional[DropCallback] = None
                            ) -> Callable[[], HeaderProtocol]:
    """The protocol factory behind :func:`start_server`, for
    ``loop.create_server`` and friends (e.g. with ``sock=``)."""
    handlers = _Handlers(handler)

    def app_factory() -> StreamReaderProtocol:
        loop = asyncio.get_running_loop()
        reader = StreamReader(limit=limit, loop=loop)
        return StreamReaderProtocol(reader, handlers, loop=loop)
    factory = wrap_protocol_factory(
        app_factory, config, ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout, on_drop=on_drop)
    setattr(factory, 'handler_tasks', handlers.tasks)
    return factory


async def start_server(handler: ConnectionHandler, host: Any = None,
                       port: Any = None, *,
                       config: HeaderConfig = DEFAULT_CONFIG,
                       ssl: Optional[_ssl.SSLContext] = None,
                       ssl_handshake_timeout: Optional[float] = None,
                       limit: int = _LIMIT,
                       on_drop: Optional[DropCallback] = None,
                       **kwds: Any) -> asyncio.Server:
    """:func:`asyncio.start_server`, reading the header before ``handler``.

    Args:
        handler: Called as ``handler(reader, writer, info)`` once the header
            is read (and TLS is up); a coroutine function runs as a task
            that is kept referenced, and its exceptions are reported to the
            loop's exception handler.
        host: As for :meth:`loop.create_server <asyncio.loop.create_server>`.
        port: Likewise.
        config: The policy, timeout and size cap.
        ssl: Start TLS after the header (not before it).
        ssl_handshake_timeout: Seconds allowed for the TLS handshake.
        limit: The StreamReader's buffer limit.
        on_drop: Called as ``on_drop(socket_peername, exception)`` for each
            connection dropped before ``handler`` saw it.
        kwds: More arguments for ``loop.create_server``.

    """
    loop = asyncio.get_running_loop()
    factory = stream_protocol_factory(
        handler, config, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
        limit=limit, on_drop=on_drop)
    return await loop.create_server(factory, host, port, **kwds)


async def start_unix_server(handler: ConnectionHandler,
                            path: Optional[str] = None, *,
                            config: HeaderConfig = DEFAULT_CONFIG,
                            ssl: Optional[_ssl.SSLContext] = None,
                            ssl_handshake_timeout: Optional[float] = None,
                            limit: int = _LIMIT,
                            on_drop: Optional[DropCallback] = None,
                            **kwds: Any) -> asyncio.Server:
    """:func:`asyncio.start_unix_server`, reading the header before
    ``handler``; arguments as for :func:`start_server`."""
    loop = asyncio.get_running_loop()
    factory = stream_protocol_factory(
        handler, config, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
        limit=limit, on_drop=on_drop)
    return await loop.create_unix_server(factory, path, **kwds)
