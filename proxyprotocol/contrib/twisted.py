"""Twisted behind the PROXY protocol.

Wrap a factory, or the endpoint it listens on::

    endpoint = ProxyProtocolServerEndpoint(
        TCP4ServerEndpoint(reactor, 8080),
        HeaderConfig(trusted=['10.0.0.0/8']))
    endpoint.listen(site)

For each connection the header is read first, with the policy, timeout and
size cap of the :class:`~proxyprotocol.policy.HeaderConfig`; only then is the
application's protocol built (``buildProtocol`` gets the *client's*
address) and connected. So ``transport.getPeer()`` and ``getHost()``
already name the original client and the address it connected to in the
application's ``connectionMade`` (Twisted's own
``twisted.protocols.haproxy`` wrapper connects the application before the
header is read, so its ``connectionMade`` sees the proxy). Connections that
are refused, time out or send an invalid header are aborted, and the
application never hears of them.

The header itself: :func:`proxy_info` on the application's transport gives
the :class:`~proxyprotocol.acceptor.ConnectionInfo` (``.result``, ``.tlv``,
``.socket_peername``...).

TLS after the header: pass ``tls=`` (an ``IOpenSSLServerConnectionCreator``
such as ``twisted.internet.ssl.CertificateOptions``, needs
``twisted[tls]``): the application's factory is then wrapped in
``TLSMemoryBIOFactory`` *inside* the PROXY wrapper, so TLS starts exactly
where the header ends, including bytes that arrived with it. (Calling
``transport.startTLS()`` from ``connectionMade`` instead would lose a
ClientHello that came in the same segment as the header.)

"""

from __future__ import annotations

import socket
from typing import Any, Callable, Literal, Optional

from twisted.internet import address as _address
from twisted.internet import defer, interfaces
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python import failure
from zope.interface import (  # type: ignore[import-untyped,unused-ignore]
    directlyProvides, implementer, providedBy)

from ..acceptor import ConnectionInfo, HeaderAcceptor
from ..errors import ProxyProtocolError
from ..policy import DEFAULT_CONFIG, HeaderConfig
from ..typing import SockAddr

__all__ = ['ProxyProtocolWrapper', 'ProxyProtocolWrappingFactory',
           'ProxyProtocolServerEndpoint', 'proxy_info', 'DropCallback']

_log = Logger()

_Kind = Literal['TCP', 'UDP']

#: ``on_drop(socket_peername, exception)``: a connection was dropped before
#: the application saw it.
DropCallback = Callable[[Any, BaseException], None]


def _sockaddr(addr: Any) -> tuple[SockAddr, Optional[int]]:
    # A Twisted address as the socket module gives it, and its family.
    if isinstance(addr, _address.IPv6Address):
        scope = addr.scopeID if isinstance(addr.scopeID, int) else 0
        return ((addr.host, addr.port, addr.flowInfo or 0, scope),
                socket.AF_INET6)
    if isinstance(addr, _address.IPv4Address):
        return (addr.host, addr.port), socket.AF_INET
    if isinstance(addr, _address.UNIXAddress):
        raw: Any = addr.name
        name = raw.decode(errors='surrogateescape') \
            if isinstance(raw, bytes) else str(raw or '')
        return name, getattr(socket, 'AF_UNIX', None)
    return None, None


def _twisted_address(sockaddr: SockAddr, kind: _Kind) -> Any:
    # A socket-style address as a Twisted address.
    if isinstance(sockaddr, tuple):
        if len(sockaddr) == 4:
            return _address.IPv6Address(kind, sockaddr[0], sockaddr[1],
                                        sockaddr[2], sockaddr[3])
        if ':' in sockaddr[0]:
            return _address.IPv6Address(kind, sockaddr[0], sockaddr[1])
        return _address.IPv4Address(kind, sockaddr[0], sockaddr[1])
    if isinstance(sockaddr, str):
        return _address.UNIXAddress(sockaddr)
    return None


def proxy_info(transport: Any) -> Optional[ConnectionInfo]:
    """The :class:`~proxyprotocol.acceptor.ConnectionInfo` of the connection
    under ``transport`` (the application's transport, even through TLS),
    or None if it did not come through a PROXY protocol wrapper."""
    for _ in range(16):
        if isinstance(transport, ProxyProtocolWrapper):
            return transport.info
        transport = getattr(transport, 'transport', None)
        if transport is None:
            return None
    return None


@implementer(interfaces.ITransport)
class ProxyProtocolWrapper(Protocol):
    """The protocol the reactor sees: the header first, then the
    application's protocol, to which it is the transport.

    Args:
        factory: The wrapping factory (config, clock, wrapped factory).

    """

    disconnecting = False

    def __init__(self, factory: ProxyProtocolWrappingFactory) -> None:
        self.factory = factory
        #: The application's protocol (an ``IProtocol``), once connected.
        self.wrappedProtocol: Any = None
        self._acceptor: Optional[HeaderAcceptor] = None
        self._info: Optional[ConnectionInfo] = None
        self._timer: Any = None
        self._error: Optional[BaseException] = None
        self._registered = False

    @property
    def info(self) -> Optional[ConnectionInfo]:
        """The connection's information, once the header is read."""
        return self._info

    @property
    def error(self) -> Optional[BaseException]:
        """Why the connection was dropped before the application saw it."""
        return self._error

    def logPrefix(self) -> str:
        app = self.wrappedProtocol
        if app is not None and interfaces.ILoggingContext.providedBy(app):
            return f'{app.logPrefix()} (PROXY)'
        return f'{type(self).__name__}'

    # From the reactor

    def makeConnection(self, transport: interfaces.ITransport) -> None:
        # Offer what the real transport offers (TCP options, ...).
        directlyProvides(self, providedBy(transport))
        super().makeConnection(transport)  # type: ignore[no-untyped-call,unused-ignore]

    def connectionMade(self) -> None:
        factory = self.factory
        factory.registerProtocol(self)
        self._registered = True
        transport: Any = self.transport
        peer, family = _sockaddr(transport.getPeer())
        host, _ = _sockaddr(transport.getHost())
        acceptor = self._acceptor = HeaderAcceptor(
            factory.config, socket_peername=peer, socket_sockname=host,
            socket_family=family)
        try:
            info = acceptor.start()
        except ProxyProtocolError as exc:
            self._drop(exc)
            return
        if info is not None:
            self._header_done(info, b'')
            return
        self._timer = factory.clock().callLater(factory.config.timeout,
                                                self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        app = self.wrappedProtocol
        if app is not None:
            app.dataReceived(data)
            return
        acceptor = self._acceptor
        if acceptor is None or self._error is not None:
            return
        try:
            outcome = acceptor.feed(data)
        except ProxyProtocolError as exc:
            self._drop(exc)
            return
        if isinstance(outcome, ConnectionInfo):
            self._header_done(outcome, acceptor.trailing_data)

    def connectionLost(self, reason: failure.Failure = connectionDone
                       ) -> None:
        self._cancel_timer()
        if self._registered:
            self._registered = False
            self.factory.unregisterProtocol(self)
        app, self.wrappedProtocol = self.wrappedProtocol, None
        if app is not None:
            app.connectionLost(reason)
        elif self._error is None and self._acceptor is not None:
            try:
                self._acceptor.feed_eof()
            except ProxyProtocolError as exc:
                self._error = exc
                self._report(exc)

    # The header

    def _header_done(self, info: ConnectionInfo, trailing: bytes) -> None:
        self._cancel_timer()
        self._info = info
        app: Any = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if app is None:
            self.loseConnection()
            return
        self.wrappedProtocol = app
        try:
            app.makeConnection(self)
        except Exception:
            # A protocol that failed to start is not told of the end.
            self.wrappedProtocol = None
            _log.failure('{app!r} failed to start', app=app)
            self.abortConnection()
            return
        if trailing and self.wrappedProtocol is app:
            app.dataReceived(trailing)

    def _timed_out(self) -> None:
        self._timer = None
        acceptor = self._acceptor
        if acceptor is not None and self._info is None:
            self._drop(acceptor.timeout_error())

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _drop(self, exc: BaseException) -> None:
        self._cancel_timer()
        self._error = exc
        self._report(exc)
        transport: Any = self.transport
        if transport is not None:
            abort = getattr(transport, 'abortConnection', None)
            if abort is not None:
                abort()
            else:  # pragma: no cover - every stream transport has it
                transport.loseConnection()

    def _report(self, exc: BaseException) -> None:
        peer = None
        transport: Any = self.transport
        if transport is not None:
            peer, _ = _sockaddr(transport.getPeer())
        _log.debug('dropping connection from {peer!r}: {error}', peer=peer,
                   error=exc)
        on_drop = self.factory.on_drop
        if on_drop is not None:
            try:
                on_drop(peer, exc)
            except Exception:  # pragma: no cover - the hook's own bug
                _log.failure('on_drop callback failed')

    # ITransport, for the application

    def _real(self) -> Any:
        transport = self.transport
        assert transport is not None, 'not connected'
        return transport

    def write(self, data: bytes) -> None:
        self._real().write(data)

    def writeSequence(self, data: Any) -> None:
        self._real().writeSequence(data)

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._real().loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._real().abortConnection()

    def getPeer(self) -> Any:
        """The client (an ``IAddress``): from the header when it gave
        addresses, else the real peer."""
        info = self._info
        if info is None or not info.proxied:
            return self._real().getPeer()
        return _twisted_address(info.peername, self._kind())

    def getHost(self) -> Any:
        """The address the client connected to, likewise."""
        info = self._info
        if info is None or not info.proxied:
            return self._real().getHost()
        return _twisted_address(info.sockname, self._kind())

    def _kind(self) -> _Kind:
        info = self._info
        result = None if info is None else info.result
        if result is not None and result.protocol == socket.SOCK_DGRAM:
            return 'UDP'
        return 'TCP'

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._real().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._real().unregisterProducer()

    def __getattr__(self, name: str) -> Any:
        # Everything else the real transport offers (setTcpNoDelay,
        # pauseProducing, ...). Private names are not passed on.
        if name.startswith('_'):
            raise AttributeError(name)
        return getattr(self.__dict__.get('transport'), name)


class ProxyProtocolWrappingFactory(Factory):
    """A server factory that reads the PROXY header before handing each
    connection to ``wrappedFactory``.

    Args:
        wrappedFactory: The application's factory (an
            ``IProtocolFactory``).
        config: Trusted proxies, policies, timeout, size cap.
        tls: Start TLS right after the header with this
            ``IOpenSSLServerConnectionCreator`` (needs ``twisted[tls]``).
        clock: The ``IReactorTime`` for the header timeout (the global
            reactor by default).
        on_drop: Called as ``on_drop(socket_peername, exception)`` for each
            connection dropped before the application saw it.

    """

    def __init__(self, wrappedFactory: Any,
                 config: HeaderConfig = DEFAULT_CONFIG, *,
                 tls: Optional[Any] = None,
                 clock: Optional[interfaces.IReactorTime] = None,
                 on_drop: Optional[DropCallback] = None) -> None:
        wrapped: Any = wrappedFactory
        if tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory
            wrapped = TLSMemoryBIOFactory(tls, False, wrappedFactory)
        #: The application's factory (an ``IProtocolFactory``), inside TLS
        #: when ``tls`` is given.
        self.wrappedFactory: Any = wrapped
        self.config = config
        self.on_drop = on_drop
        self._clock: Any = clock
        self.protocols: dict[ProxyProtocolWrapper, int] = {}

    def clock(self) -> Any:
        """The ``IReactorTime`` for header timeouts."""
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        return self._clock

    def logPrefix(self) -> str:
        wrapped = self.wrappedFactory
        if interfaces.ILoggingContext.providedBy(wrapped):
            name = wrapped.logPrefix()
        else:
            name = type(wrapped).__name__
        return f'{name} (PROXY)'

    def doStart(self) -> None:
        self.wrappedFactory.doStart()
        super().doStart()  # type: ignore[no-untyped-call,unused-ignore]

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
        super().doStop()  # type: ignore[no-untyped-call,unused-ignore]

    def buildProtocol(self, addr: Optional[interfaces.IAddress]
                      ) -> Optional[Protocol]:
        # The application's protocol is built once the header is read.
        return ProxyProtocolWrapper(self)

    def registerProtocol(self, wrapper: ProxyProtocolWrapper) -> None:
        """Track a connection (while it is open)."""
        self.protocols[wrapper] = 1

    def unregisterProtocol(self, wrapper: ProxyProtocolWrapper) -> None:
        """Forget a closed connection."""
        self.protocols.pop(wrapper, None)


@implementer(interfaces.IStreamServerEndpoint)
class ProxyProtocolServerEndpoint:
    """An endpoint whose connections start with a PROXY header.

    Args:
        endpoint: The listening endpoint (an ``IStreamServerEndpoint``:
            TCP, UNIX, systemd...).
        config, tls, clock, on_drop: As for
            :class:`ProxyProtocolWrappingFactory`.

    """

    def __init__(self, endpoint: Any,
                 config: HeaderConfig = DEFAULT_CONFIG, *,
                 tls: Optional[Any] = None,
                 clock: Optional[interfaces.IReactorTime] = None,
                 on_drop: Optional[DropCallback] = None) -> None:
        self._endpoint: Any = endpoint
        self._config = config
        self._tls = tls
        self._clock = clock
        self._on_drop = on_drop

    def listen(self, protocolFactory: Any
               ) -> defer.Deferred[interfaces.IListeningPort]:
        """Listen, wrapping ``protocolFactory`` (an ``IProtocolFactory``)."""
        listening: defer.Deferred[interfaces.IListeningPort]
        listening = self._endpoint.listen(ProxyProtocolWrappingFactory(
            protocolFactory, self._config, tls=self._tls, clock=self._clock,
            on_drop=self._on_drop))
        return listening
