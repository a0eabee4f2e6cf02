"""uvicorn behind the PROXY protocol.

From the command line, name one of the protocol classes with ``--http``::

    PROXYPROTOCOL_TRUSTED=10.0.0.0/8 uvicorn app:app \\
        --http proxyprotocol.contrib.uvicorn:H11ProxyProtocol

``H11ProxyProtocol``, ``HttpToolsProxyProtocol`` and ``AutoProxyProtocol``
(httptools when installed, else h11) read their settings from the
``PROXYPROTOCOL_*`` environment variables when first imported (see
:func:`~proxyprotocol.contrib.config_from_env` and
:func:`~proxyprotocol.contrib.ssl_context_from_env`). In code, make a class
with explicit settings::

    http = proxy_protocol_class('h11', config=HeaderConfig(trusted=[...]))
    uvicorn.run(app, http=http)

For each connection the header is read first (by
:class:`~proxyprotocol.aio.protocol.HeaderProtocol`, with the policy, timeout
and size cap of the config); only then is uvicorn's own protocol created, and
it sees a transport whose ``'peername'``, ``'sockname'`` and ``'socket'``
report the addresses the header gave. So the ASGI scope's ``client`` and
``server`` are the original client and the address it connected to, for
HTTP requests and WebSocket upgrades, and uvicorn's access log names the
client. The header itself is in every scope as
``scope['extensions']['proxy_protocol']``: a dict with ``'info'`` (the
:class:`~proxyprotocol.acceptor.ConnectionInfo`), ``'result'``, ``'tlv'``,
``'socket_peername'`` and ``'socket_sockname'`` (the proxy's connection).

TLS: uvicorn's ``--ssl-*`` options would put TLS *before* the header, so
they are refused with these classes; give the certificate in
``PROXYPROTOCOL_SSL_CERTFILE`` / ``PROXYPROTOCOL_SSL_KEYFILE`` (or ``ssl=``)
and TLS starts right after the header.

uvicorn's forwarded-headers middleware (on by default) trusts
``X-Forwarded-For`` when the *client* is in ``--forwarded-allow-ips``
(127.0.0.1 and ::1 by default), and the client is what the header says. A
header is only read from the trusted proxies of the config, so a forged
header from anyone else cannot make the client 127.0.0.1; still, when the
PROXY protocol is how the client address arrives, ``--no-proxy-headers`` is
the simplest choice.

"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, Callable, ClassVar, Final, Optional, Union, cast

from uvicorn.config import Config
from uvicorn.importer import import_from_string
from uvicorn.server import ServerState

from ..acceptor import ConnectionInfo
from ..aio.protocol import DropCallback, HeaderProtocol
from ..policy import DEFAULT_CONFIG, HeaderConfig
from ..aio.sockview import ProxiedSocket
from ._common import config_from_env, ssl_context_from_env

__all__ = ['UvicornProxyProtocol', 'proxy_protocol_class',
           'H11ProxyProtocol', 'HttpToolsProxyProtocol', 'AutoProxyProtocol',
           'EXTENSION']

#: The key of the header's information in ``scope['extensions']``.
EXTENSION: Final = 'proxy_protocol'

_HTTP_PROTOCOLS: Final = {
    'auto': 'uvicorn.protocols.http.auto:AutoHTTPProtocol',
    'h11': 'uvicorn.protocols.http.h11_impl:H11Protocol',
    'httptools': 'uvicorn.protocols.http.httptools_impl:HttpToolsProtocol',
}

_ALPN: Final = ['http/1.1']

_log = logging.getLogger('uvicorn.error')
_warned: list[bool] = []
_TLS_BEFORE_HEADER: Final = (
    'uvicorn TLS options (--ssl-certfile, ssl_certfile=...) put TLS before '
    'the PROXY header, and connections are refused; give the certificate to '
    'the PROXY protocol class instead (PROXYPROTOCOL_SSL_CERTFILE, or ssl= '
    'of proxy_protocol_class())')

ASGIApp = Callable[..., Any]


class _ScopeExtension:
    """The ASGI application of one connection: adds the header's
    information to each scope, then calls uvicorn's application."""

    __slots__ = ('app', 'extension')

    def __init__(self, app: ASGIApp, extension: dict[str, Any]) -> None:
        self.app = app
        self.extension = extension

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        extensions = scope.get('extensions')
        extensions = {} if extensions is None else dict(extensions)
        extensions[EXTENSION] = self.extension
        scope['extensions'] = extensions
        return await self.app(scope, receive, send)


class _ClientTransport(asyncio.Transport):
    """The transport uvicorn's protocols see: the proxied transport, with a
    ``'socket'`` that reports the header's addresses too (uvicorn reads the
    client address from the socket before ``'peername'``)."""

    __slots__ = ('_transport', '_socket')

    def __init__(self, transport: asyncio.Transport,
                 info: ConnectionInfo) -> None:
        super().__init__()
        self._transport = transport
        # The real socket: a view of the view would work, but for nothing.
        sock = transport.get_extra_info('socket_real')
        if sock is None:
            sock = transport.get_extra_info('socket')
        self._socket = None if sock is None else ProxiedSocket(sock, info)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == 'socket':
            return self._socket if self._socket is not None else default
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: Optional[int] = None,
                                low: Optional[int] = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def __repr__(self) -> str:
        return f'<{type(self).__name__} {self._transport!r}>'


def _ws_factory(ws_class: Callable[..., asyncio.Protocol],
                app: ASGIApp) -> Callable[..., asyncio.Protocol]:
    # uvicorn makes the WebSocket protocol on an upgrade, with the
    # HTTP protocol's transport; give it the connection's application too.
    def create(*args: Any, **kwargs: Any) -> asyncio.Protocol:
        protocol = ws_class(*args, **kwargs)
        setattr(protocol, 'app', app)
        return protocol
    return create


class _ProxiedHTTPMixin:
    """Mixed into uvicorn's HTTP protocol class: on ``connection_made``,
    wrap the transport and the application for this connection."""

    app: ASGIApp
    ws_protocol_class: Optional[Callable[..., asyncio.Protocol]]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        info: ConnectionInfo = transport.get_extra_info('proxy_info')
        extension = {
            'info': info,
            'result': info.result,
            'tlv': info.tlv,
            'socket_peername': info.socket_peername,
            'socket_sockname': info.socket_sockname,
        }
        self.app = app = _ScopeExtension(self.app, extension)
        if self.ws_protocol_class is not None:
            self.ws_protocol_class = _ws_factory(self.ws_protocol_class, app)
        client = _ClientTransport(cast(asyncio.Transport, transport), info)
        super().connection_made(client)  # type: ignore[misc]


class UvicornProxyProtocol(HeaderProtocol):
    """The protocol uvicorn creates for each connection: the header first,
    then uvicorn's HTTP protocol (:attr:`http_protocol_class`).

    Made by :func:`proxy_protocol_class`, which sets the class attributes;
    uvicorn calls it as it calls its own protocol classes.

    """

    #: uvicorn's HTTP protocol (with the proxy mixin) run after the header.
    http_protocol_class: ClassVar[type[asyncio.Protocol]]
    #: The policy, timeout and size cap.
    header_config: ClassVar[HeaderConfig] = DEFAULT_CONFIG
    #: TLS started after the header, or None.
    ssl_context: ClassVar[Optional[_ssl.SSLContext]] = None
    #: Seconds allowed for that TLS handshake (None: the adapters' 60).
    ssl_handshake_timeout: ClassVar[Optional[float]] = None
    #: Called as ``on_drop(socket_peername, exception)`` for connections
    #: dropped before uvicorn saw them.
    on_drop: ClassVar[Optional[DropCallback]] = None
    #: Read by uvicorn when it builds its own TLS context.
    alpn_protocols: ClassVar[list[str]] = _ALPN

    def __init__(self, config: Config, server_state: ServerState,
                 app_state: dict[str, Any],
                 _loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if not config.loaded:
            config.load()
        self._uvicorn = (config, server_state, app_state, _loop)
        cls = type(self)
        super().__init__(self._create_http_protocol, cls.header_config,
                         ssl=cls.ssl_context,
                         ssl_handshake_timeout=cls.ssl_handshake_timeout,
                         on_drop=cls.on_drop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        config = self._uvicorn[0]
        if getattr(config, 'ssl', None) is not None:
            # Raising here would leave the connection open on uvloop.
            if not _warned:
                _warned.append(True)
                _log.error(_TLS_BEFORE_HEADER)
            cast(asyncio.Transport, transport).abort()
            return
        super().connection_made(transport)

    def _create_http_protocol(self) -> asyncio.BaseProtocol:
        config, server_state, app_state, loop = self._uvicorn
        factory = cast(Callable[..., asyncio.Protocol],
                       type(self).http_protocol_class)
        return factory(config=config, server_state=server_state,
                       app_state=app_state, _loop=loop)


def _resolve(http: Union[str, type[asyncio.Protocol]]
             ) -> type[asyncio.Protocol]:
    if isinstance(http, str):
        resolved = import_from_string(_HTTP_PROTOCOLS.get(http, http))
        if not isinstance(resolved, type):
            raise TypeError(f'{http!r} is not a protocol class')
        return resolved
    return http


def proxy_protocol_class(
        http: Union[str, type[asyncio.Protocol]] = 'auto', *,
        config: HeaderConfig = DEFAULT_CONFIG,
        ssl: Optional[_ssl.SSLContext] = None,
        ssl_handshake_timeout: Optional[float] = None,
        on_drop: Optional[DropCallback] = None
) -> type[UvicornProxyProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` / ``uvicorn.run(
    http=...)`` that reads the PROXY header before uvicorn's HTTP protocol.

    Args:
        http: uvicorn's HTTP protocol: ``'auto'``, ``'h11'``,
            ``'httptools'``, an import string or a class.
        config: Trusted proxies, policies, timeout, size cap.
        ssl: Start TLS right after the header (do not give uvicorn TLS
            options as well: they would expect TLS before the header).
        ssl_handshake_timeout: Seconds allowed for that handshake.
        on_drop: Called as ``on_drop(socket_peername, exception)`` for each
            connection dropped before uvicorn saw it.

    """
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f'ssl must be an SSLContext, not {ssl!r}')
    base = _resolve(http)
    inner = type(f'Proxied{base.__name__}', (_ProxiedHTTPMixin, base), {
        '__module__': __name__,
        '__doc__': f'{base.__name__} on a proxied transport.'})
    attrs: dict[str, Any] = {
        '__module__': __name__,
        '__doc__': f'The PROXY header, then {base.__name__}.',
        'http_protocol_class': inner,
        'header_config': config,
        'ssl_context': ssl,
        'ssl_handshake_timeout': ssl_handshake_timeout,
        'on_drop': staticmethod(on_drop) if on_drop is not None else None,
        'alpn_protocols': list(getattr(base, 'alpn_protocols', _ALPN)),
    }
    name = f'{base.__name__.removesuffix("Protocol")}ProxyProtocol'
    return type(name, (UvicornProxyProtocol,), attrs)


_FROM_ENV: Final = {
    'H11ProxyProtocol': 'h11',
    'HttpToolsProxyProtocol': 'httptools',
    'AutoProxyProtocol': 'auto',
}
_made: dict[str, type[UvicornProxyProtocol]] = {}

H11ProxyProtocol: type[UvicornProxyProtocol]
HttpToolsProxyProtocol: type[UvicornProxyProtocol]
AutoProxyProtocol: type[UvicornProxyProtocol]


def __getattr__(name: str) -> type[UvicornProxyProtocol]:
    # The classes configured from the environment are made on first use,
    # so that importing this module for proxy_protocol_class() does not
    # read (or fail on) the environment.
    http = _FROM_ENV.get(name)
    if http is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    made = _made.get(name)
    if made is None:
        made = proxy_protocol_class(
            http, config=config_from_env(),
            ssl=ssl_context_from_env(alpn_protocols=_ALPN))
        made.__name__ = made.__qualname__ = name
        _made[name] = made
    return made
