"""The proxy server's services: listeners, limits, timeouts and draining.

A :class:`Service` is one ``--service LISTEN DEST`` pair: the sockets it
listens on, what it expects from clients (a PROXY header from a trusted
proxy in front, TLS) and how it reaches the destination (addresses resolved
once at start, TLS, which header with which TLVs). It accepts connections
itself (``loop.add_reader`` on the listening sockets, up to
:data:`ACCEPT_BATCH` per wake-up) and hands each to a
:class:`~proxyprotocol.server.relay.Relay`.

A :class:`ProxyServer` runs services together and enforces what they share:
the connection limit (it stops accepting at the limit, so that further
clients wait in the kernel's backlog, and resumes below it), the timeouts
(one sweeper task checks every connection a few times per timeout instead of
one timer per connection), and graceful shutdown (stop accepting, let the
open connections finish within the drain timeout, then reset the rest).

"""

from __future__ import annotations

import _socket
import asyncio
import errno
import logging
import os
import socket
import stat
import time
from ipaddress import ip_address
from typing import Any, Final, Optional, Sequence

from ..dnsbl import Dnsbl
from ..policy import DEFAULT_TRUSTED, HeaderConfig
from ..sock import SocketInfo
from ..sockaddr import result_from_sockaddrs
from .address import Address
from .headers import HeaderFactory
from .poller import make_poller
from .relay import Relay
from .relay import format_address as _fmt
from .tlsinfo import CertSummary, load_cert_summary, record_sni

__all__ = ['Service', 'ProxyServer', 'ServiceOptions', 'bind_tcp',
           'bind_unix', 'resolve', 'ACCEPT_BATCH']

_log = logging.getLogger('proxyprotocol.server')

#: Connections accepted per wake-up of a listening socket (as HAProxy's
#: ``tune.maxaccept``): fewer wake-ups under load, and still fair between
#: listeners.
ACCEPT_BATCH: Final = 64

#: Seconds accepting pauses when the process runs out of file descriptors.
_ACCEPT_PAUSE: Final = 0.5

_VERSIONS: Final = {'v1': (1,), 'v2': (2,), 'detect': (1, 2)}
_SEND_VERSIONS: Final = {'noop': None, 'v1': 1, 'v2': 2, 'detect': 2}
_AGAIN: Final = (BlockingIOError, InterruptedError)
_FD_ERRORS: Final = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                               errno.ENOMEM))


class ServiceOptions:
    """Settings shared by every service of a server.

    Args:
        default_version: The header version for destinations without
            ``?pp=`` (2; the 0.4 positional argument may change it).
        trusted: The proxies allowed to send a header to listeners with
            ``?pp=`` (networks, and ``'unix'``).
        header_timeout: Seconds for an inbound header, and for the TLS
            handshake of a TLS listener.
        connect_timeout: Seconds to connect to the destination (and
            complete TLS with it).
        backlog: The listen queue length.
        reuse_port: Listen with ``SO_REUSEPORT`` (worker processes).
        dnsbl: A :class:`~proxyprotocol.dnsbl.Dnsbl` to look every client
            up in (0.11's ``--dnsbl``); the verdict goes into the header.

    """

    __slots__ = ('default_version', 'trusted', 'header_timeout',
                 'connect_timeout', 'backlog', 'reuse_port', 'dnsbl')

    def __init__(self, *, default_version: Optional[int] = 2,
                 trusted: Sequence[Any] = DEFAULT_TRUSTED,
                 header_timeout: float = 5.0, connect_timeout: float = 10.0,
                 backlog: int = 4096, reuse_port: bool = False,
                 dnsbl: Optional[Dnsbl] = None) -> None:
        self.default_version = default_version
        self.trusted = tuple(trusted)
        self.header_timeout = header_timeout
        self.connect_timeout = connect_timeout
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.dnsbl = dnsbl


class _RateLimit:
    """Log a repeated message at most once per second, with a count."""

    __slots__ = ('_last', '_skipped')

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        if not _log.isEnabledFor(level):
            return
        now = time.monotonic()
        if now - self._last.get(key, -2.0) < 1.0:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        if skipped:
            msg += ' (and %d more like it in the last second)'
            args = args + (skipped,)
        _log.log(level, msg, *args)


def resolve(address: Address, *, passive: bool
            ) -> list[tuple[socket.AddressFamily, Any]]:
    """``(family, sockaddr)`` for an address, in the resolver's order.

    Raises:
        OSError: The name cannot be resolved.

    """
    if address.is_unix:
        path = address.path
        assert path is not None
        return [(socket.AF_UNIX, path)]
    host: Optional[str] = address.host or None
    infos = socket.getaddrinfo(host, address.bind_port,
                               type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE if passive else 0)
    seen = set()
    result = []
    for family, _, _, _, sockaddr in infos:
        key = (family, sockaddr[:2])
        if key not in seen:
            seen.add(key)
            result.append((socket.AddressFamily(family), sockaddr))
    return result


def bind_tcp(family: socket.AddressFamily, sockaddr: Any, *, backlog: int,
             reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``sockaddr`` (listening unless told not to)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" means IPv6 only here; list "0.0.0.0" too (":PORT" does).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str, *, backlog: int,
              mode: Optional[int] = None) -> socket.socket:
    """A listening UNIX socket at ``path``; a stale socket file left by a
    process that is gone is replaced, a live one is not."""
    if not path.startswith('\x00') and os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(errno.EADDRINUSE,
                          f'{path} exists and is not a socket')
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
        except OSError:
            pass
        else:
            raise OSError(errno.EADDRINUSE,
                          f'{path} is in use by a running server')
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None and not path.startswith('\x00'):
            os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _NoTransport:
    # What SocketInfo needs for a result that holds the addresses.
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Service:
    """One listening address and its destination.

    Args:
        server: The server it belongs to.
        listen: Where to listen (``Address(..., server=True)``).
        destination: Where to connect.
        options: Shared settings.

    Raises:
        ValueError: The addresses or their options are not valid.
        OSError: The destination cannot be resolved, or a TLS file loaded.

    """

    def __init__(self, server: ProxyServer, listen: Address,
                 destination: Address, options: ServiceOptions) -> None:
        listen.check()
        destination.check()
        self.server = server
        self.listen = listen
        self.destination = destination
        self.options = options
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.poller = server.poller
        self.sockets: list[socket.socket] = []
        self._locals: dict[int, Any] = {}
        self._accepting = False
        self._rate = server.rate
        self.unix_paths: list[str] = []
        # Inbound: a header from a proxy in front, TLS.
        pp = listen.pp_name
        self.header_config: Optional[HeaderConfig] = None
        if pp not in (None, 'noop'):
            query = listen.query
            trusted: Sequence[Any] = options.trusted
            if 'trusted' in query:
                trusted = [t.strip() for v in query['trusted']
                           for t in v.split(',') if t.strip()]
            self.header_config = HeaderConfig(
                trusted=trusted,
                trusted_policy=query.get('policy', ['require'])[-1].lower(),
                untrusted_policy=query.get('untrusted', ['reject'])[-1]
                .lower(),
                versions=_VERSIONS[pp or 'detect'],
                timeout=options.header_timeout)
        self.server_context = listen.ssl
        self.own_cert = CertSummary(None, None, None)
        if self.server_context is not None:
            record_sni(self.server_context)
            self.own_cert = load_cert_summary(listen.query['cert'][-1])
        self.handshake_timeout = options.header_timeout
        # Outbound.
        self.client_context = destination.ssl
        self.server_hostname = destination.sni \
            if self.client_context is not None else None
        self.connect_timeout = options.connect_timeout
        self.dnsbl = options.dnsbl
        name = destination.pp_name
        version = options.default_version if name is None \
            else _SEND_VERSIONS[name]
        tlvs = destination.tlvs
        self.headers = HeaderFactory(
            version, unique_id='unique-id' in tlvs, crc32c='crc32c' in tlvs,
            ssl='ssl' in tlvs, alpn='alpn' in tlvs,
            authority='authority' in tlvs)
        self.destination_addresses = resolve(destination, passive=False)
        if not self.destination_addresses:
            raise OSError(f'{destination.describe()} resolves to nothing')

    # -- listening ---------------------------------------------------------

    def bind(self) -> None:
        """Open the listening sockets."""
        opts = self.options
        if self.listen.is_unix:
            path = self.listen.path
            assert path is not None
            mode_text = self.listen.query.get('mode', [None])[-1]
            mode = int(mode_text, 8) if mode_text else None
            self.add_socket(bind_unix(path, backlog=opts.backlog, mode=mode))
            if not path.startswith('\x00'):
                self.unix_paths.append(path)
            return
        port = self.listen.bind_port
        for family, sockaddr in resolve(self.listen, passive=True):
            if port == 0 and self.sockets:
                # One ephemeral port for every address of the name.
                port = self.sockets[0].getsockname()[1]
            if port != sockaddr[1]:
                sockaddr = (sockaddr[0], port) + tuple(sockaddr[2:])
            self.add_socket(bind_tcp(family, sockaddr, backlog=opts.backlog,
                                     reuse_port=opts.reuse_port))

    def add_socket(self, sock: socket.socket) -> None:
        """Listen on an already bound socket (e.g. inherited)."""
        sock.setblocking(False)
        self.sockets.append(sock)
        local = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            self._locals[sock.fileno()] = local
        elif not ip_address(local[0].partition('%')[0]).is_unspecified:
            # A specific address: every connection's local address is it.
            self._locals[sock.fileno()] = local

    @property
    def addresses(self) -> list[str]:
        """The addresses listened on, for logs."""
        return [_fmt(s.getsockname()) for s in self.sockets]

    def start_accepting(self) -> None:
        if self._accepting:
            return
        self._accepting = True
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._on_accept, sock)

    def stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())

    def close(self) -> None:
        """Stop listening and close the listening sockets."""
        self.stop_accepting()
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def _on_accept(self, lsock: socket.socket) -> None:
        server = self.server
        local = self._locals.get(lsock.fileno())
        family, kind = int(lsock.family), int(lsock.type)
        tcp = family != socket.AF_UNIX
        # socket.accept() converts family and type to enums for every new
        # socket; the C-level _accept() and socket type skip that work.
        accept = lsock._accept   # type: ignore[attr-defined]
        for _ in range(ACCEPT_BATCH):
            if server.full:
                server.pause_accepting()
                return
            try:
                fd, peer = accept()
            except _AGAIN:
                return
            except OSError as exc:
                if exc.errno in _FD_ERRORS:
                    self._rate.log(logging.WARNING, 'accept',
                                   'cannot accept: %s; pausing for %g s',
                                   exc, _ACCEPT_PAUSE)
                    server.pause_accepting(_ACCEPT_PAUSE)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue
                self._rate.log(logging.WARNING, 'accept', 'accept: %s', exc)
                return
            sock = _socket.socket(family, kind, 0, fd)
            sock.setblocking(False)
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if local is None:
                try:
                    here = sock.getsockname()
                except OSError:
                    sock.close()
                    continue
            else:
                here = local
            relay = Relay(self, sock, peer, here)
            server.relay_opened(relay)
            relay.start()

    async def lookup(self, relay: Relay) -> Optional[str]:
        """The DNSBL verdict on a relay's client (the original client
        when a proxy in front said who it is)."""
        assert self.dnsbl is not None
        info = relay.info
        if info is not None and info.proxied and info.result is not None:
            result = info.result
        else:
            result = result_from_sockaddrs(relay.peer, relay.local,
                                           protocol=socket.SOCK_STREAM)
        verdict: Optional[str] = await self.dnsbl.lookup(
            SocketInfo.get(_NoTransport(), result))
        return verdict

    # -- events from relays ------------------------------------------------

    def relay_started(self, relay: Relay) -> None:
        """The header is sent; bytes are about to flow."""
        if _log.isEnabledFor(logging.DEBUG):
            info = relay.info
            via = ''
            if info is not None and info.proxied:
                via = f' (for {_fmt(info.peername)} -> ' \
                      f'{_fmt(info.sockname)})'
            tls = f' TLS {relay.tls_facts!r}' if relay.tls_facts else ''
            _log.debug('%s%s%s => %s: %d-byte header sent', relay.describe(),
                       via, tls, self.destination.describe(),
                       relay.header_len)

    def relay_closed(self, relay: Relay) -> None:
        self.server.relay_closed(relay)
        if _log.isEnabledFor(logging.DEBUG) and relay.up is not None:
            down = relay.down
            assert down is not None
            _log.debug('%s closed after %.3f s: %d bytes up, %d down',
                       relay.describe(), time.monotonic() - relay.started,
                       relay.up.count, down.count)

    def connect_failed(self, relay: Relay, exc: BaseException) -> None:
        self.server.stats['connect_failed'] += 1
        self._rate.log(logging.WARNING, 'connect:' + str(self.destination),
                       '%s: cannot connect to %s: %s', relay.describe(),
                       self.destination.describe(), exc)

    def refused(self, relay: Relay, step: str, exc: BaseException) -> None:
        self.server.stats['refused'] += 1
        self._rate.log(logging.INFO, 'refused:' + step,
                       '%s: dropped at the %s: %s', relay.describe(), step,
                       exc)

    def timed_out(self, relay: Relay, step: str) -> None:
        self.server.stats['timed_out'] += 1
        self._rate.log(logging.INFO, 'timeout:' + step,
                       '%s: timed out at the %s', relay.describe(), step)


class ProxyServer:
    """Services that share a connection limit, timeouts and shutdown.

    Args:
        max_connections: The most connections at once; at the limit the
            server stops accepting until one closes.
        idle_timeout: Seconds without a byte either way after which a
            connection is closed (0: never).
        drain_timeout: Seconds open connections get to finish on shutdown.
        loop: The event loop (default: the running one).
        poller: ``'epoll'``, ``'loop'`` or None (the best available); see
            :func:`~proxyprotocol.server.poller.make_poller`.

    """

    def __init__(self, *, max_connections: int = 10000,
                 idle_timeout: float = 600.0, drain_timeout: float = 30.0,
                 loop: Optional[asyncio.AbstractEventLoop] = None,
                 poller: Optional[str] = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        #: Socket readiness for every relay (see :mod:`.poller`).
        self.poller = make_poller(self.loop, poller)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.drain_timeout = drain_timeout
        self.services: list[Service] = []
        self.relays: set[Relay] = set()
        self.full = False
        self.rate = _RateLimit()
        self.stats = {'accepted': 0, 'connect_failed': 0, 'refused': 0,
                      'timed_out': 0}
        self._paused_until = 0.0
        self._resume_handle: Optional[asyncio.TimerHandle] = None
        self._sweeper: Optional[asyncio.Task[None]] = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.extra: list[Any] = []   # other services (UDP) closed with us

    def add(self, listen: Address, destination: Address,
            options: ServiceOptions) -> Service:
        """Add a TCP/UNIX service (not yet listening)."""
        service = Service(self, listen, destination, options)
        self.services.append(service)
        return service

    def start(self) -> None:
        """Accept on every service and start the timeout sweeper."""
        for service in self.services:
            service.start_accepting()
        self._sweeper = self.loop.create_task(self._sweep())

    # -- the connection limit ----------------------------------------------

    def relay_opened(self, relay: Relay) -> None:
        self.relays.add(relay)
        self.stats['accepted'] += 1
        self._idle.clear()
        if len(self.relays) >= self.max_connections:
            self.full = True

    def relay_closed(self, relay: Relay) -> None:
        relays = self.relays
        relays.discard(relay)
        if self.full and len(relays) < self.max_connections:
            self.full = False
            if not self._closing and self._resume_handle is None:
                for service in self.services:
                    service.start_accepting()
        if not relays:
            self._idle.set()

    def pause_accepting(self, seconds: float = 0.0) -> None:
        """Stop accepting: until a connection closes, or for ``seconds``."""
        for service in self.services:
            service.stop_accepting()
        if seconds and self._resume_handle is None:
            self._resume_handle = self.loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        if not self._closing and not self.full:
            for service in self.services:
                service.start_accepting()

    # -- timeouts ----------------------------------------------------------

    def _tick(self) -> float:
        timeouts = [t for t in (self.idle_timeout,) if t > 0]
        for service in self.services:
            timeouts.append(service.connect_timeout)
            timeouts.append(service.handshake_timeout)
        return min([1.0] + [t / 4 for t in timeouts if t > 0] + [])

    async def _sweep(self) -> None:
        tick = max(0.02, self._tick())
        idle = self.idle_timeout
        loop = self.loop
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for relay in list(self.relays):
                deadline = relay.deadline
                if deadline:
                    if now >= deadline:
                        relay.timed_out()
                elif relay.active:
                    relay.active = False
                    relay.idle_since = now
                elif idle > 0 and now - relay.idle_since >= idle:
                    relay.timed_out()

    # -- shutdown ----------------------------------------------------------

    async def shutdown(self, drain: Optional[float] = None) -> None:
        """Stop listening; give open connections ``drain`` seconds (default
        :attr:`drain_timeout`) to finish; reset the rest."""
        self._closing = True
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        for service in self.services:
            service.close()
        for other in self.extra:
            other.close()
        timeout = self.drain_timeout if drain is None else drain
        if self.relays:
            _log.info('draining %d connection(s) for up to %g s',
                      len(self.relays), timeout)
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self.abort_all()
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
        for service in self.services:
            for path in service.unix_paths:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            service.unix_paths.clear()
        for other in self.extra:
            wait = getattr(other, 'wait_closed', None)
            if wait is not None:
                await wait()
        self.poller.close()

    def abort_all(self) -> None:
        """Reset every open connection now."""
        if self.relays:
            _log.info('closing %d connection(s)', len(self.relays))
        for relay in list(self.relays):
            relay.close(abort=True)
