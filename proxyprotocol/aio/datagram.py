"""asyncio datagram endpoints: a PROXY v2 header in front of every datagram.

Over UDP the header and its payload travel in the same datagram, and the
receiver parses the header of every datagram on its own (spec section 2).
Wrap any :class:`asyncio.DatagramProtocol` factory::

    transport, app = await create_datagram_endpoint(
        MyProtocol, local_addr=('0.0.0.0', 5353),
        config=HeaderConfig(trusted=['10.0.0.0/8']))

For each datagram, a :class:`HeaderDatagramProtocol` applies the policy
that the :class:`~proxyprotocol.policy.HeaderConfig` gives for the *real*
sender (the proxy), parses the header, and calls the application's
``datagram_received(payload, addr)`` with ``addr`` the *original* client
from the header. Datagrams from refused senders, or without a valid header
when one is required, are dropped and counted in :class:`DatagramStats`;
they never reach the application, and so are never passed on with the
wrong address.

Replies: ``transport.sendto(data, addr)`` with an original client's
``addr`` goes to the real sender the last datagram from that client came
through (the proxy), which relays it. By default the reply is sent raw, as
HAProxy-style proxies expect; ``reply_header=True`` puts a v2 header in
front (source: the address the client sent to; destination: the client).
``transport.sendto(data, info)`` with the :class:`ConnectionInfo` of a
datagram replies through exactly that datagram's sender.

Each datagram's details (the real sender, the header, its TLVs) come as a
:class:`~proxyprotocol.acceptor.ConnectionInfo`, the same type the stream
adapters give per connection: an application protocol with a
``proxied_datagram_received(data, info)`` method (see
:class:`ProxiedDatagramProtocol`) gets it with each datagram, and
:meth:`ProxiedDatagramTransport.info_for` looks up the latest one for a
client.

"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from typing import Any, Callable, Final, Optional, Union, cast

from ..acceptor import ConnectionInfo, ProxyProtocolRejectedError
from ..errors import ProxyProtocolError, ProxyProtocolSyntaxError
from ..header import build_header, parse_datagram
from ..policy import DEFAULT_CONFIG, HeaderConfig, Policy
from ..sockaddr import result_from_sockaddrs
from ..typing import SockAddr
from ..v2 import V2_SIGNATURE
from .protocol import DropCallback

__all__ = ['HeaderDatagramProtocol', 'ProxiedDatagramTransport',
           'ProxiedDatagramProtocol', 'DatagramStats',
           'DatagramProtocolFactory', 'wrap_datagram_protocol_factory',
           'create_datagram_endpoint', 'DEFAULT_MAX_ROUTES',
           'DEFAULT_ROUTE_TIMEOUT']

_log = logging.getLogger(__name__)

#: A factory of application protocols, as
#: ``loop.create_datagram_endpoint`` takes.
DatagramProtocolFactory = Callable[[], asyncio.BaseProtocol]

#: How many original clients a reply can be routed to at once. Each entry
#: is one :class:`ConnectionInfo` (a few hundred bytes), so the table stays
#: in the tens of megabytes at most; the least recently heard client is
#: forgotten first.
DEFAULT_MAX_ROUTES: Final = 65536

#: Seconds after a client's last datagram during which replies to it are
#: still routed. Longer than the idle timeouts of common UDP proxies
#: (HAProxy, nginx, Linux conntrack's 120 s for UDP streams), after which
#: the proxy has forgotten the client anyway.
DEFAULT_ROUTE_TIMEOUT: Final = 300.0

# The trust decision parses the sender's address; it is cached per host,
# and the cache is cleared when it holds this many.
_TRUST_CACHE_SIZE: Final = 4096

_STREAM: Final = socket.SOCK_STREAM


class DatagramStats:
    """Counters of one endpoint, updated as datagrams come and go.

    Attributes:
        received: Datagrams read from the socket.
        delivered: Datagrams handed to the application.
        rejected: Dropped: the policy for the real sender is
            :attr:`~proxyprotocol.policy.Policy.REJECT` (untrusted).
        invalid: Dropped: no valid header where one was required (none,
            malformed, bad CRC32C, too long, or a STREAM header).
        sent: Replies sent.
        unroutable: Replies dropped: the address is not a client heard from
            within the route timeout.

    """

    __slots__ = ('received', 'delivered', 'rejected', 'invalid', 'sent',
                 'unroutable')

    def __init__(self) -> None:
        self.received = 0
        self.delivered = 0
        self.rejected = 0
        self.invalid = 0
        self.sent = 0
        self.unroutable = 0

    @property
    def dropped(self) -> int:
        """All datagrams dropped before the application saw them."""
        return self.rejected + self.invalid

    def as_dict(self) -> dict[str, int]:
        """A snapshot of the counters."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        counts = ', '.join(f'{k}={v}' for k, v in self.as_dict().items())
        return f'DatagramStats({counts})'


class ProxiedDatagramProtocol(asyncio.DatagramProtocol):
    """A datagram protocol that also wants each datagram's details.

    The wrapper calls :meth:`proxied_datagram_received` on any application
    protocol that has it (subclassing this is optional), instead of
    ``datagram_received``.

    """

    def proxied_datagram_received(self, data: bytes,
                                  info: ConnectionInfo) -> None:
        """A datagram for the client ``info.peername``; by default passed
        to ``datagram_received(data, info.peername)``."""
        self.datagram_received(data, info.peername)  # type: ignore[arg-type]


class HeaderDatagramProtocol(asyncio.DatagramProtocol):
    """The protocol the event loop sees: a header check on every datagram.

    Args:
        app_factory: Makes the application's protocol, once the endpoint
            is up; it gets a :class:`ProxiedDatagramTransport`.
        config: Who must send a header (decided from the real sender of
            each datagram) and the cap on a header's size. Datagrams only
            carry v2 headers, so ``config.versions`` must include 2 when a
            policy reads headers; the timeout does not apply.
        reply_header: Put a v2 header in front of replies to proxied
            clients (most proxies, HAProxy included, expect raw replies).
        on_drop: Called as ``on_drop(sender, exception)`` for each dropped
            datagram, e.g. to log it.
        max_routes: How many clients replies can be routed to.
        route_timeout: Seconds after a client's last datagram during which
            replies to it are routed.

    Raises:
        ValueError: The config reads headers but not v2 ones, or a limit is
            not positive.

    """

    def __init__(self, app_factory: DatagramProtocolFactory,
                 config: HeaderConfig = DEFAULT_CONFIG, *,
                 reply_header: bool = False,
                 on_drop: Optional[DropCallback] = None,
                 max_routes: int = DEFAULT_MAX_ROUTES,
                 route_timeout: float = DEFAULT_ROUTE_TIMEOUT) -> None:
        if 2 not in config.versions and (config.trusted_policy.reads_header
                                         or config.untrusted_policy
                                         .reads_header):
            raise ValueError('datagrams carry v2 headers only, and the '
                             'config does not accept version 2')
        if max_routes < 1:
            raise ValueError(f'max_routes must be at least 1, not '
                             f'{max_routes!r}')
        if not route_timeout > 0:
            raise ValueError(f'route_timeout must be positive, not '
                             f'{route_timeout!r}')
        self._factory = app_factory
        self._config = config
        self._reply_header = reply_header
        self._on_drop = on_drop
        self._max_routes = max_routes
        self._route_timeout = float(route_timeout)
        self._max_length = config.max_length
        self._stats = DatagramStats()
        self._trust: dict[Any, tuple[bool, Policy]] = {}
        self._routes: OrderedDict[Any, tuple[ConnectionInfo, float]] = \
            OrderedDict()
        self._transport: Optional[asyncio.DatagramTransport] = None
        self._proxied: Optional[ProxiedDatagramTransport] = None
        self._app: Optional[asyncio.BaseProtocol] = None
        self._deliver: Optional[Callable[[bytes, ConnectionInfo], None]] \
            = None
        self._sockname: SockAddr = None
        self._family: Optional[socket.AddressFamily] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # Information

    @property
    def stats(self) -> DatagramStats:
        """The endpoint's counters."""
        return self._stats

    @property
    def app_protocol(self) -> Optional[asyncio.BaseProtocol]:
        """The application's protocol, once created."""
        return self._app

    @property
    def transport(self) -> Optional[ProxiedDatagramTransport]:
        """The application's transport, once created."""
        return self._proxied

    # Events from the event loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.DatagramTransport subclasses.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._loop = asyncio.get_running_loop()
        sock = transport.get_extra_info('socket')
        family = getattr(sock, 'family', None)
        self._family = None if family is None else socket.AddressFamily(
            family)
        self._sockname = transport.get_extra_info('sockname')
        self._proxied = ProxiedDatagramTransport(self, self._transport)
        app = self._factory()
        self._set_app(app)
        app.connection_made(self._proxied)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        stats = self._stats
        stats.received += 1
        host = addr[0] if isinstance(addr, tuple) and addr else addr
        trust = self._trust.get(host)
        if trust is None:
            trust = self._decide(host, addr)
        trusted, policy = trust
        header = None
        if policy is Policy.REJECT:
            stats.rejected += 1
            self._drop(addr, ProxyProtocolRejectedError(addr))
            return
        if policy is Policy.REQUIRE or (
                policy is Policy.OPTIONAL and data[:12] == V2_SIGNATURE):
            try:
                header, payload = parse_datagram(
                    data, max_length=self._max_length)
                if header.result.protocol == _STREAM:
                    raise ProxyProtocolSyntaxError(
                        'the header of a datagram describes a STREAM '
                        'connection', field='v2.protocol', offset=13)
            except ProxyProtocolError as exc:
                stats.invalid += 1
                self._drop(addr, exc)
                return
            data = bytes(payload)
        info = ConnectionInfo(
            socket_peername=addr, socket_sockname=self._sockname,
            socket_family=self._family, trusted=trusted, policy=policy,
            header=header, initial_data=b'')
        client = info.peername
        if client:
            key = client[:2] if type(client) is tuple else client
            routes = self._routes
            loop = self._loop
            assert loop is not None
            routes[key] = (info, loop.time())
            routes.move_to_end(key)
            if len(routes) > self._max_routes:
                routes.popitem(last=False)
        stats.delivered += 1
        deliver = self._deliver
        assert deliver is not None
        deliver(data, info)

    def error_received(self, exc: Exception) -> None:
        app = self._app
        if app is not None:
            cast(asyncio.DatagramProtocol, app).error_received(exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        app, self._app = self._app, None
        self._routes.clear()
        if app is not None:
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # Policy, drops and replies

    def _set_app(self, app: asyncio.BaseProtocol) -> None:
        self._app = app
        hook = getattr(app, 'proxied_datagram_received', None)
        if callable(hook):
            self._deliver = hook
        else:
            plain = cast(asyncio.DatagramProtocol, app).datagram_received
            self._deliver = lambda data, info: plain(
                data, info.peername)  # type: ignore[arg-type]

    def _decide(self, host: Any, addr: Any) -> tuple[bool, Policy]:
        config = self._config
        trusted = config.is_trusted(addr, self._family)
        decided = (trusted, config.trusted_policy if trusted
                   else config.untrusted_policy)
        cache = self._trust
        if len(cache) >= _TRUST_CACHE_SIZE:
            cache.clear()
        cache[host] = decided
        return decided

    def _drop(self, sender: Any, exc: BaseException) -> None:
        _log.debug('datagram from %r dropped: %s', sender, exc)
        on_drop = self._on_drop
        if on_drop is not None:
            on_drop(sender, exc)

    def info_for(self, addr: Any) -> Optional[ConnectionInfo]:
        """The latest datagram's details for the client ``addr``, while
        replies to it are routed."""
        key = addr[:2] if isinstance(addr, tuple) else addr
        entry = self._routes.get(key)
        if entry is None:
            return None
        info, heard = entry
        loop = self._loop
        if loop is not None and loop.time() - heard > self._route_timeout:
            return None
        return info

    def send_reply(self, data: Any, addr: Any) -> None:
        """Send ``data`` to the client ``addr`` (an address or a
        :class:`ConnectionInfo`) through its real sender."""
        transport = self._transport
        if transport is None:
            raise RuntimeError('the endpoint is not open')
        info = addr if isinstance(addr, ConnectionInfo) \
            else self.info_for(addr)
        if info is None:
            self._stats.unroutable += 1
            _log.debug('reply to %r dropped: no datagram from that client '
                       'in the last %g s', addr, self._route_timeout)
            return
        if self._reply_header and info.proxied:
            result = result_from_sockaddrs(info.sockname, info.peername,
                                           protocol=socket.SOCK_DGRAM)
            data = build_header(result) + bytes(data)
        transport.sendto(data, info.socket_peername)
        self._stats.sent += 1


class ProxiedDatagramTransport(asyncio.DatagramTransport):
    """The application's transport: replies go through the real sender.

    ``sendto(data, addr)`` takes an original client's address (as
    ``datagram_received`` gave it) or a datagram's
    :class:`ConnectionInfo`; a reply to a client not heard from within the
    route timeout is dropped and counted (``stats.unroutable``), as a lost
    datagram would be. ``sendto(data)`` without an address goes to the
    remote address of a connected endpoint, raw. ``get_extra_info`` and
    everything else is the real transport's.

    """

    def __init__(self, protocol: HeaderDatagramProtocol,
                 transport: asyncio.DatagramTransport) -> None:
        super().__init__()
        self._header_protocol = protocol
        self._transport = transport

    @property
    def real_transport(self) -> asyncio.DatagramTransport:
        """The transport of the socket, for sending anything unchanged."""
        return self._transport

    @property
    def stats(self) -> DatagramStats:
        """The endpoint's counters."""
        return self._header_protocol.stats

    def info_for(self, addr: Any) -> Optional[ConnectionInfo]:
        """The latest datagram's details for the client ``addr``: the real
        sender (``socket_peername``), the header, its TLVs; None when the
        client was not heard from within the route timeout."""
        return self._header_protocol.info_for(addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if addr is None:
            self._transport.sendto(data)
        else:
            self._header_protocol.send_reply(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._header_protocol._set_app(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        app = self._header_protocol.app_protocol
        assert app is not None
        return app

    def get_write_buffer_size(self) -> int:
        return int(cast(Any, self._transport).get_write_buffer_size())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        low, high = cast(Any, self._transport).get_write_buffer_limits()
        return int(low), int(high)

    def set_write_buffer_limits(self, high: Optional[int] = None,
                                low: Optional[int] = None) -> None:
        cast(Any, self._transport).set_write_buffer_limits(high, low)

    def __repr__(self) -> str:
        return (f'<ProxiedDatagramTransport '
                f'sockname={self.get_extra_info("sockname")!r} '
                f'{self.stats!r}>')


def wrap_datagram_protocol_factory(
        app_factory: DatagramProtocolFactory,
        config: HeaderConfig = DEFAULT_CONFIG, *,
        reply_header: bool = False, on_drop: Optional[DropCallback] = None,
        max_routes: int = DEFAULT_MAX_ROUTES,
        route_timeout: float = DEFAULT_ROUTE_TIMEOUT
) -> Callable[[], HeaderDatagramProtocol]:
    """A protocol factory for ``loop.create_datagram_endpoint`` that reads
    the header of every datagram before ``app_factory``'s protocol sees it.

    The arguments are :class:`HeaderDatagramProtocol`'s, and are checked
    here, before any socket is opened.

    """
    HeaderDatagramProtocol(app_factory, config, reply_header=reply_header,
                           max_routes=max_routes, route_timeout=route_timeout)

    def factory() -> HeaderDatagramProtocol:
        return HeaderDatagramProtocol(
            app_factory, config, reply_header=reply_header, on_drop=on_drop,
            max_routes=max_routes, route_timeout=route_timeout)
    return factory


async def create_datagram_endpoint(
        app_factory: DatagramProtocolFactory,
        local_addr: Optional[Union[tuple[str, int], str]] = None,
        remote_addr: Optional[Union[tuple[str, int], str]] = None, *,
        config: HeaderConfig = DEFAULT_CONFIG, reply_header: bool = False,
        on_drop: Optional[DropCallback] = None,
        max_routes: int = DEFAULT_MAX_ROUTES,
        route_timeout: float = DEFAULT_ROUTE_TIMEOUT, **kwds: Any
) -> tuple[ProxiedDatagramTransport, asyncio.BaseProtocol]:
    """Open a datagram endpoint whose application gets the original
    clients: :meth:`loop.create_datagram_endpoint
    <asyncio.loop.create_datagram_endpoint>` with the header check of
    :class:`HeaderDatagramProtocol` in front of ``app_factory``'s protocol.

    Returns:
        The application's transport and protocol.

    """
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        wrap_datagram_protocol_factory(
            app_factory, config, reply_header=reply_header, on_drop=on_drop,
            max_routes=max_routes, route_timeout=route_timeout),
        local_addr=local_addr, remote_addr=remote_addr, **kwds)
    transport, app = protocol.transport, protocol.app_protocol
    assert transport is not None and app is not None
    return transport, app
