"""``aiohttp.web`` behind the PROXY protocol.

Use one of these sites in place of aiohttp's ``TCPSite`` / ``UnixSite`` /
``SockSite``::

    runner = web.AppRunner(app)
    await runner.setup()
    site = ProxyTCPSite(runner, '0.0.0.0', 8080,
                        config=HeaderConfig(trusted=['10.0.0.0/8']))
    await site.start()

For each connection the header is read first (by
:class:`~proxyprotocol.aio.protocol.HeaderProtocol`, with the policy, timeout
and size cap of ``config``); aiohttp's request handler is only created
afterwards, on a transport whose ``'peername'`` and ``'sockname'`` come from
the header. So ``request.remote`` is the original client's address, and
``request.transport.get_extra_info('peername')`` its address and port. The
header's TLVs and the real (proxy) addresses are there too: see
:func:`proxy_info`.

With ``ssl_context=``, TLS starts right *after* the header (where a proxy
such as HAProxy puts it), and ``request.secure`` is true.

"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from typing import Any, Optional

from aiohttp import web
from aiohttp.web_runner import BaseRunner, BaseSite

from ..acceptor import ConnectionInfo
from ..aio.protocol import DropCallback, wrap_protocol_factory
from ..policy import DEFAULT_CONFIG, HeaderConfig

__all__ = ['ProxyTCPSite', 'ProxyUnixSite', 'ProxySockSite', 'proxy_info']


def proxy_info(request: web.BaseRequest) -> Optional[ConnectionInfo]:
    """The :class:`~proxyprotocol.acceptor.ConnectionInfo` of the request's
    connection: the header (``.result``, ``.tlv``), the real proxy
    addresses (``.socket_peername``), the policy applied. None if the
    connection did not come through one of these sites."""
    transport = request.transport
    if transport is None:
        return None
    info: Optional[ConnectionInfo] = transport.get_extra_info('proxy_info')
    return info


class _ProxySite(BaseSite):
    """What the sites share: the wrapped protocol factory."""

    __slots__ = ('_header_config', '_on_drop', '_ssl_handshake_timeout')

    def __init__(self, runner: BaseRunner, *,
                 config: HeaderConfig = DEFAULT_CONFIG,
                 ssl_context: Optional[_ssl.SSLContext] = None,
                 ssl_handshake_timeout: Optional[float] = None,
                 on_drop: Optional[DropCallback] = None,
                 backlog: int = 128) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._header_config = config
        self._on_drop = on_drop
        self._ssl_handshake_timeout = ssl_handshake_timeout

    @property
    def header_config(self) -> HeaderConfig:
        """The policy, timeout and size cap."""
        return self._header_config

    def _protocol_factory(self) -> Any:
        server = self._runner.server
        assert server is not None, 'call runner.setup() first'
        factory = wrap_protocol_factory(
            server, self._header_config, ssl=self._ssl_context,
            ssl_handshake_timeout=self._ssl_handshake_timeout,
            on_drop=self._on_drop)
        return factory

    def _scheme(self) -> str:
        return 'https' if self._ssl_context else 'http'


class ProxyTCPSite(_ProxySite):
    """``aiohttp.web.TCPSite``, reading the PROXY header first.

    Args:
        runner: The (set up) application runner.
        host: The address to listen on (all by default).
        port: The port (8080, or 8443 with TLS; 0 for any).
        config: Trusted proxies, policies, timeout, size cap.
        ssl_context: Start TLS right after the header.
        ssl_handshake_timeout: Seconds allowed for that handshake.
        on_drop: Called as ``on_drop(socket_peername, exception)`` for each
            connection dropped before aiohttp saw it.
        backlog: The listen backlog.
        reuse_address: As for ``loop.create_server``.
        reuse_port: Likewise.

    """

    __slots__ = ('_host', '_port', '_bound_port', '_reuse_address',
                 '_reuse_port')

    def __init__(self, runner: BaseRunner, host: Optional[str] = None,
                 port: Optional[int] = None, *,
                 config: HeaderConfig = DEFAULT_CONFIG,
                 ssl_context: Optional[_ssl.SSLContext] = None,
                 ssl_handshake_timeout: Optional[float] = None,
                 on_drop: Optional[DropCallback] = None,
                 backlog: int = 128, reuse_address: Optional[bool] = None,
                 reuse_port: Optional[bool] = None) -> None:
        super().__init__(runner, config=config, ssl_context=ssl_context,
                         ssl_handshake_timeout=ssl_handshake_timeout,
                         on_drop=on_drop, backlog=backlog)
        self._host = host
        self._port = (8443 if ssl_context else 8080) if port is None \
            else port
        self._bound_port: Optional[int] = None
        self._reuse_address = reuse_address
        self._reuse_port = reuse_port

    @property
    def port(self) -> int:
        """The port listened on (the real one once started)."""
        return self._port if self._bound_port is None else self._bound_port

    @property
    def name(self) -> str:
        host = self._host or '0.0.0.0'
        if ':' in host:
            host = f'[{host}]'
        return f'{self._scheme()}://{host}:{self.port} (PROXY protocol)'

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = server = await loop.create_server(
            self._protocol_factory(), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        sockets = server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets \
            else self._port


class ProxyUnixSite(_ProxySite):
    """``aiohttp.web.UnixSite``, reading the PROXY header first (UNIX socket
    peers are trusted by the default config).

    Args:
        runner: The (set up) application runner.
        path: The socket's path.
        config, ssl_context, ssl_handshake_timeout, on_drop, backlog: As for
            :class:`ProxyTCPSite`.

    """

    __slots__ = ('_path',)

    def __init__(self, runner: BaseRunner, path: str, *,
                 config: HeaderConfig = DEFAULT_CONFIG,
                 ssl_context: Optional[_ssl.SSLContext] = None,
                 ssl_handshake_timeout: Optional[float] = None,
                 on_drop: Optional[DropCallback] = None,
                 backlog: int = 128) -> None:
        super().__init__(runner, config=config, ssl_context=ssl_context,
                         ssl_handshake_timeout=ssl_handshake_timeout,
                         on_drop=on_drop, backlog=backlog)
        self._path = path

    @property
    def name(self) -> str:
        return f'{self._scheme()}://unix:{self._path}: (PROXY protocol)'

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            self._protocol_factory(), self._path, backlog=self._backlog)


class ProxySockSite(_ProxySite):
    """``aiohttp.web.SockSite``, reading the PROXY header first.

    Args:
        runner: The (set up) application runner.
        sock: A bound socket (e.g. inherited from a supervisor).
        config, ssl_context, ssl_handshake_timeout, on_drop, backlog: As for
            :class:`ProxyTCPSite`.

    """

    __slots__ = ('_sock', '_name')

    def __init__(self, runner: BaseRunner, sock: socket.socket, *,
                 config: HeaderConfig = DEFAULT_CONFIG,
                 ssl_context: Optional[_ssl.SSLContext] = None,
                 ssl_handshake_timeout: Optional[float] = None,
                 on_drop: Optional[DropCallback] = None,
                 backlog: int = 128) -> None:
        super().__init__(runner, config=config, ssl_context=ssl_context,
                         ssl_handshake_timeout=ssl_handshake_timeout,
                         on_drop=on_drop, backlog=backlog)
        self._sock = sock
        address = sock.getsockname()
        if isinstance(address, tuple):
            host = f'[{address[0]}]' if ':' in address[0] else address[0]
            self._name = f'{self._scheme()}://{host}:{address[1]}'
        else:
            self._name = f'{self._scheme()}://unix:{address}:'

    @property
    def name(self) -> str:
        return f'{self._name} (PROXY protocol)'

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol_factory(), sock=self._sock, backlog=self._backlog)
