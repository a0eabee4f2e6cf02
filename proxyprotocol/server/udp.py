"""UDP services: a PROXY v2 header in front of every forwarded datagram.

:func:`serve_udp` is the engine of ``proxyprotocol-server``'s UDP services.
It listens on UDP and, for each client (source address), opens one *flow*:
a UDP socket connected to the upstream. Every datagram from the client
goes upstream on that socket as one datagram, a v2 header (PROXY, INET or
INET6, DGRAM: the client and the address it sent to) followed by the
payload (spec section 2: never split). Whatever the upstream sends back on
that socket goes to the client, raw. Flows idle for ``idle_timeout``
seconds (no datagram either way) are closed.

Bounds: at most ``max_flows`` flows (one socket each); a datagram from a
new client when the table is full is dropped. No datagram is ever queued
in user space: each one is sent at once or dropped (a full socket buffer
drops it, as the network would), so memory is bounded by the flow table.
A datagram whose header and payload together would exceed the largest
UDP payload (65,507 bytes over IPv4, 65,527 over IPv6) is dropped, not
split or truncated. Every drop is counted in :class:`UDPProxyStats`.

When the listening address is a wildcard (``0.0.0.0``, ``::``), the address
each datagram was sent to is read from the packet (``IP_PKTINFO``, Linux),
so the header names it and replies leave from it.

:func:`serve_udp_echo` is the UDP side of ``proxyprotocol-echo``: an echo
service behind :mod:`proxyprotocol.aio.datagram`, which logs the original
sender of each client and sends every payload back through its proxy.

The hot paths read sockets directly (``loop.add_reader``, up to
:data:`BATCH` datagrams per wake-up) rather than through asyncio datagram
transports, which cost one event-loop iteration per datagram. They run on
any event loop with ``add_reader``, uvloop included.

"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import time
from ipaddress import ip_address
from socket import AF_INET, AF_INET6, SOCK_DGRAM
from typing import Any, Final, Iterable, Optional, Union

from ..acceptor import ConnectionInfo
from ..aio.datagram import (DEFAULT_MAX_ROUTES, DEFAULT_ROUTE_TIMEOUT,
                            DatagramStats, ProxiedDatagramProtocol,
                            ProxiedDatagramTransport,
                            wrap_datagram_protocol_factory)
from ..aio.protocol import DropCallback
from ..errors import ProxyProtocolBuildError
from ..policy import DEFAULT_CONFIG, HeaderConfig
from ..sockaddr import result_from_sockaddrs
from ..tlv import EMPTY_TLV, ProxyProtocolTLV
from ..v2 import pack_v2

__all__ = ['serve_udp', 'UDPProxy', 'UDPProxyStats', 'serve_udp_echo',
           'UDPEchoServer', 'EchoDatagramProtocol', 'parse_host_port',
           'DEFAULT_IDLE_TIMEOUT', 'DEFAULT_MAX_FLOWS', 'MAX_UDP_PAYLOAD',
           'BATCH']

_log = logging.getLogger(__name__)

#: Seconds without a datagram either way after which a flow is closed.
#: Longer than the 30 s Linux conntrack keeps an unanswered UDP "connection"
#: (so a client behind NAT loses its mapping before we lose its flow), and
#: short enough that a burst of clients frees its sockets within a minute.
DEFAULT_IDLE_TIMEOUT: Final = 60.0

#: The most flows (clients, and so upstream sockets) at once. Each flow
#: holds one file descriptor and one small object; the kernel charges a
#: socket's buffers only for datagrams waiting in them.
DEFAULT_MAX_FLOWS: Final = 4096

#: The largest UDP payload by address family: 65,535 less the UDP header
#: (8 bytes) and, for IPv4, the IP header (20 bytes); an IPv6 header is not
#: counted in its payload length.
MAX_UDP_PAYLOAD: Final = {AF_INET: 65507, AF_INET6: 65527}

#: The most datagrams read from one socket per event-loop wake-up, so that
#: one busy client cannot hold up the others for long.
BATCH: Final = 64

_RECV_SIZE: Final = 65536  # more than any UDP payload: never truncated
_FD_MARGIN: Final = 64     # descriptors kept for everything but flows
# Linux values, absent from the socket module before Python 3.12.
_IP_PKTINFO: Final = getattr(socket, 'IP_PKTINFO', 8)
_IPV6_RECVPKTINFO: Final = getattr(socket, 'IPV6_RECVPKTINFO', 49)
_IPV6_PKTINFO: Final = getattr(socket, 'IPV6_PKTINFO', 50)
_ANCILLARY_SIZE: Final = socket.CMSG_SPACE(20)

#: An address to listen on or send to: ``(host, port)`` or ``'HOST:PORT'``
#: (``'[IPV6]:PORT'``).
HostPort = Union[tuple[Optional[str], int], str]


def parse_host_port(value: HostPort) -> tuple[Optional[str], int]:
    """Read ``(host, port)``, ``'HOST:PORT'`` or ``'[IPV6]:PORT'``; an empty
    host (``':PORT'``) is None: every address.

    Raises:
        ValueError: Not an address with a port from 0 to 65535.

    """
    if isinstance(value, tuple):
        if len(value) < 2:
            raise ValueError(f'{value!r} is not a (host, port) pair')
        host, port = value[0], value[1]
    else:
        text = str(value)
        if text.startswith('['):
            host, sep, rest = text[1:].partition(']')
            if not sep or not rest.startswith(':'):
                raise ValueError(f'{text!r} is not [IPV6]:PORT')
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(':')
            if not sep:
                raise ValueError(f'{text!r} is not HOST:PORT')
            if ':' in host:
                raise ValueError(f'{text!r}: write IPv6 addresses in '
                                 'brackets, [IPV6]:PORT')
        if not port_text.isdigit():
            raise ValueError(f'{text!r}: the port is not a number')
        port = int(port_text)
    if isinstance(port, bool) or not isinstance(port, int) \
            or not 0 <= port <= 0xFFFF:
        raise ValueError(f'port {port!r} is not in 0-65535')
    return (host or None), port


class UDPProxyStats:
    """Counters of a UDP proxy service.

    Attributes:
        received: Datagrams received from clients.
        forwarded: Datagrams sent upstream, each with its header.
        replied: Datagrams from the upstream sent back to clients.
        dropped_too_big: Header and payload would not fit in one datagram.
        dropped_no_flow: A new client's datagram, when the flow table was
            full or no upstream socket could be opened.
        dropped_busy: A socket's send buffer was full (either direction).
        errors: Other failed sends and receives (an upstream answering
            with ICMP port unreachable, ...).
        flows_opened: Flows opened so far.
        flows_expired: Flows closed after ``idle_timeout``.

    """

    __slots__ = ('received', 'forwarded', 'replied', 'dropped_too_big',
                 'dropped_no_flow', 'dropped_busy', 'errors', 'flows_opened',
                 'flows_expired')

    def __init__(self) -> None:
        self.received = 0
        self.forwarded = 0
        self.replied = 0
        self.dropped_too_big = 0
        self.dropped_no_flow = 0
        self.dropped_busy = 0
        self.errors = 0
        self.flows_opened = 0
        self.flows_expired = 0

    @property
    def dropped(self) -> int:
        """All datagrams dropped, either way."""
        return self.dropped_too_big + self.dropped_no_flow + \
            self.dropped_busy

    def as_dict(self) -> dict[str, int]:
        """A snapshot of the counters."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        counts = ', '.join(f'{k}={v}' for k, v in self.as_dict().items())
        return f'UDPProxyStats({counts})'


class _Listener:
    # One listening socket and the flows of the clients that sent to it.
    __slots__ = ('sock', 'local', 'pktinfo', 'flows')

    def __init__(self, sock: socket.socket, pktinfo: bool) -> None:
        self.sock = sock
        self.local: tuple[Any, ...] = sock.getsockname()
        self.pktinfo = pktinfo
        self.flows: dict[Any, _Flow] = {}


class _Flow:
    # One client: its upstream socket and the header put on its datagrams.
    __slots__ = ('key', 'client', 'local', 'listener', 'sock', 'send',
                 'prefix', 'room', 'last', 'ancillary')

    def __init__(self, key: Any, client: Any, local: Any,
                 listener: _Listener, sock: socket.socket, prefix: bytes,
                 room: int, now: float,
                 ancillary: Optional[list[tuple[int, int, bytes]]]) -> None:
        self.key = key
        self.client = client
        self.local = local
        self.listener = listener
        self.sock = sock
        self.send = sock.send
        self.prefix = prefix
        self.room = room
        self.last = now
        self.ancillary = ancillary


class UDPProxy:
    """A running UDP proxy service; made by :func:`serve_udp`.

    Close it with :meth:`close` and :meth:`wait_closed`, or use it as an
    async context manager.

    """

    def __init__(self, upstream: tuple[Any, ...],
                 upstream_family: socket.AddressFamily, *,
                 version: Optional[int] = 2,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_flows: int = DEFAULT_MAX_FLOWS, crc32c: bool = False,
                 tlv: ProxyProtocolTLV = EMPTY_TLV) -> None:
        if version not in (2, None):
            raise ValueError(
                f'version must be 2 (PROXY v2; v1 has no form for UDP) or '
                f'None (no header), not {version!r}')
        if isinstance(idle_timeout, bool) or not 0 < idle_timeout < 1e9:
            raise ValueError(f'idle_timeout must be a positive number of '
                             f'seconds, not {idle_timeout!r}')
        if isinstance(max_flows, bool) or not isinstance(max_flows, int) \
                or max_flows < 1:
            raise ValueError(f'max_flows must be a positive int, not '
                             f'{max_flows!r}')
        self._loop = asyncio.get_running_loop()
        self._upstream = upstream
        self._upstream_family = upstream_family
        self._max_payload = MAX_UDP_PAYLOAD[upstream_family]
        self._version = version
        self._idle_timeout = float(idle_timeout)
        self._interval = min(max(self._idle_timeout / 4, 0.01), 1.0)
        self._max_flows = max_flows
        self._crc32c = crc32c
        self._tlv = tlv
        self._stats = UDPProxyStats()
        self._listeners: list[_Listener] = []
        self._flow_count = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._closed = asyncio.Event()
        self._serving = False
        self._warned = 0.0

    # Information

    @property
    def stats(self) -> UDPProxyStats:
        """The counters."""
        return self._stats

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(listener.sock for listener in self._listeners)

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """The listening addresses (with the ports chosen for port 0)."""
        return [listener.local for listener in self._listeners]

    @property
    def upstream(self) -> tuple[Any, ...]:
        """The upstream's address, resolved when the service started."""
        return self._upstream

    @property
    def flow_count(self) -> int:
        """How many flows are open."""
        return self._flow_count

    @property
    def max_flows(self) -> int:
        """The most flows at once."""
        return self._max_flows

    @property
    def idle_timeout(self) -> float:
        """Seconds of silence after which a flow is closed."""
        return self._idle_timeout

    def flows(self) -> list[tuple[Any, Any]]:
        """The open flows as ``(client, local address)`` pairs."""
        return [(flow.client, flow.local) for listener in self._listeners
                for flow in listener.flows.values()]

    def is_serving(self) -> bool:
        """Whether the service is listening."""
        return self._serving

    # Life cycle

    def _listen(self, sock: socket.socket, pktinfo: bool) -> None:
        sock.setblocking(False)
        listener = _Listener(sock, pktinfo)
        self._listeners.append(listener)
        callback = self._client_ready_pktinfo if pktinfo \
            else self._client_ready
        self._loop.add_reader(sock.fileno(), callback, listener)
        self._serving = True
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._tick)

    def close(self) -> None:
        """Stop listening and close every flow at once."""
        if self._closed.is_set():
            return
        self._serving = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for listener in self._listeners:
            for flow in list(listener.flows.values()):
                self._close_flow(flow)
            self._loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has been called and done."""
        await self._closed.wait()

    async def __aenter__(self) -> UDPProxy:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    # Flows

    def _tick(self) -> None:
        now = time.monotonic()
        deadline = now - self._idle_timeout
        expired = [flow for listener in self._listeners
                   for flow in listener.flows.values() if flow.last <= deadline]
        for flow in expired:
            self._close_flow(flow)
        self._stats.flows_expired += len(expired)
        if expired:
            _log.debug('%d idle UDP flows closed, %d open', len(expired),
                       self._flow_count)
        self._timer = self._loop.call_later(self._interval, self._tick)

    def _open_flow(self, listener: _Listener, key: Any, client: Any,
                   local: Any, now: float,
                   ancillary: Optional[list[tuple[int, int, bytes]]] = None
                   ) -> Optional[_Flow]:
        stats = self._stats
        if self._flow_count >= self._max_flows:
            stats.dropped_no_flow += 1
            self._warn(f'UDP flow table full ({self._max_flows} flows): '
                       f'datagrams from new clients are dropped')
            return None
        if self._version is None:
            prefix = b''
        else:
            try:
                prefix = pack_v2(result_from_sockaddrs(
                    client, local, protocol=SOCK_DGRAM, tlv=self._tlv),
                    crc32c=self._crc32c)
            except (ProxyProtocolBuildError, KeyError) as exc:
                stats.errors += 1
                _log.debug('no header for %r -> %r: %s', client, local, exc)
                return None
        try:
            sock = socket.socket(self._upstream_family, SOCK_DGRAM)
        except OSError as exc:
            stats.dropped_no_flow += 1
            self._warn(f'cannot open an upstream UDP socket: {exc}')
            return None
        try:
            sock.setblocking(False)
            sock.connect(self._upstream)
        except OSError as exc:
            sock.close()
            stats.dropped_no_flow += 1
            self._warn(f'cannot reach the upstream {self._upstream!r}: {exc}')
            return None
        flow = _Flow(key, client, local, listener, sock, prefix,
                     self._max_payload - len(prefix), now, ancillary)
        listener.flows[key] = flow
        self._flow_count += 1
        stats.flows_opened += 1
        self._loop.add_reader(sock.fileno(), self._upstream_ready, flow)
        return flow

    def _close_flow(self, flow: _Flow) -> None:
        flows = flow.listener.flows
        if flows.get(flow.key) is flow:
            del flows[flow.key]
            self._flow_count -= 1
            self._loop.remove_reader(flow.sock.fileno())
            flow.sock.close()

    def _warn(self, message: str) -> None:
        # At most one warning a second: drops come in floods.
        now = time.monotonic()
        if now - self._warned >= 1.0:
            self._warned = now
            _log.warning('%s', message)

    # Datagrams

    def _client_ready(self, listener: _Listener) -> None:
        # The hot path: counters are kept in locals and added once.
        recvfrom = listener.sock.recvfrom
        get = listener.flows.get
        now = time.monotonic()
        received = forwarded = 0
        try:
            for _ in range(BATCH):
                try:
                    data, client = recvfrom(_RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self._stats.errors += 1
                    _log.debug('UDP receive error: %s', exc)
                    continue
                received += 1
                flow = get(client)
                if flow is None:
                    flow = self._open_flow(listener, client, client,
                                           listener.local, now)
                    if flow is None:
                        continue
                flow.last = now
                if len(data) > flow.room:
                    self._stats.dropped_too_big += 1
                    continue
                try:
                    flow.send(flow.prefix + data)
                except BlockingIOError:
                    self._stats.dropped_busy += 1
                    continue
                except OSError as exc:
                    if not self._send_again(flow, data, exc):
                        continue
                forwarded += 1
        finally:
            stats = self._stats
            stats.received += received
            stats.forwarded += forwarded

    def _client_ready_pktinfo(self, listener: _Listener) -> None:
        recvmsg = listener.sock.recvmsg
        flows = listener.flows
        port = listener.local[1]
        now = time.monotonic()
        received = forwarded = 0
        try:
            for _ in range(BATCH):
                try:
                    data, ancdata, _flags, client = recvmsg(
                        _RECV_SIZE, _ANCILLARY_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self._stats.errors += 1
                    _log.debug('UDP receive error: %s', exc)
                    continue
                received += 1
                local_ip, ifindex = _destination(ancdata)
                key = (client, local_ip)
                flow = flows.get(key)
                if flow is None:
                    if local_ip is None:
                        local, ancillary = listener.local, None
                    else:
                        local = (local_ip, port) + listener.local[2:]
                        ancillary = _reply_ancillary(local_ip, ifindex)
                    flow = self._open_flow(listener, key, client, local, now,
                                           ancillary)
                    if flow is None:
                        continue
                flow.last = now
                if len(data) > flow.room:
                    self._stats.dropped_too_big += 1
                    continue
                try:
                    flow.send(flow.prefix + data)
                except BlockingIOError:
                    self._stats.dropped_busy += 1
                    continue
                except OSError as exc:
                    if not self._send_again(flow, data, exc):
                        continue
                forwarded += 1
        finally:
            stats = self._stats
            stats.received += received
            stats.forwarded += forwarded

    def _send_again(self, flow: _Flow, payload: bytes,
                    exc: OSError) -> bool:
        # A connected UDP socket reports an earlier ICMP error (port
        # unreachable: the upstream was down) on the next send, which is
        # then not sent; send once more. Any other error drops it.
        stats = self._stats
        stats.errors += 1
        if isinstance(exc, ConnectionRefusedError):
            try:
                flow.send(flow.prefix + payload)
                return True
            except OSError:
                pass
        if exc.errno == errno.EMSGSIZE:
            stats.errors -= 1
            stats.dropped_too_big += 1
        _log.debug('UDP datagram from %r not forwarded: %s', flow.client,
                   exc)
        return False

    def _upstream_ready(self, flow: _Flow) -> None:
        recv = flow.sock.recv
        sock = flow.listener.sock
        client, ancillary = flow.client, flow.ancillary
        stats = self._stats
        replied = 0
        try:
            for _ in range(BATCH):
                try:
                    data = recv(_RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    # ICMP errors (the upstream's port is closed...).
                    stats.errors += 1
                    _log.debug('UDP upstream error for %r: %s', client, exc)
                    continue
                try:
                    if ancillary is None:
                        sock.sendto(data, client)
                    else:
                        sock.sendmsg((data,), ancillary, 0, client)
                except BlockingIOError:
                    stats.dropped_busy += 1
                    continue
                except OSError as exc:
                    stats.errors += 1
                    _log.debug('UDP reply to %r failed: %s', client, exc)
                    continue
                replied += 1
        finally:
            stats.replied += replied
            flow.last = time.monotonic()


def _destination(ancdata: list[tuple[int, int, bytes]]
                 ) -> tuple[Optional[str], int]:
    # The address a datagram was sent to and the interface it came in on,
    # from IP_PKTINFO/IPV6_PKTINFO.
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO \
                and len(data) >= 12:
            # struct in_pktinfo: ifindex, spec_dst, addr (the destination).
            return socket.inet_ntop(AF_INET, data[8:12]), \
                int.from_bytes(data[:4], sys.byteorder)
        if level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO \
                and len(data) >= 20:
            # struct in6_pktinfo: addr, ifindex.
            return socket.inet_ntop(AF_INET6, data[:16]), \
                int.from_bytes(data[16:20], sys.byteorder)
    return None, 0


def _reply_ancillary(local_ip: str, ifindex: int
                     ) -> list[tuple[int, int, bytes]]:
    # Replies leave from the address the client sent to. The interface is
    # left to routing, except for IPv6 link-local addresses, which only
    # mean something on the interface the datagram came in on.
    ip = ip_address(local_ip)
    if ip.version == 4:
        return [(socket.IPPROTO_IP, _IP_PKTINFO,
                 bytes(4) + ip.packed + bytes(4))]
    index = ifindex if ip.is_link_local else 0
    return [(socket.IPPROTO_IPV6, _IPV6_PKTINFO,
             ip.packed + index.to_bytes(4, sys.byteorder))]


def _enable_pktinfo(sock: socket.socket) -> bool:
    try:
        if sock.family == AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
    except OSError:
        return False
    return True


def _ensure_descriptors(count: int) -> None:
    # Raise the soft limit on open files towards the hard one so that
    # ``max_flows`` sockets can be open; warn if it cannot be done.
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= count:
        return
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError):
            pass
    if soft < count:
        _log.warning('the open-file limit (%d) is lower than max_flows plus '
                     '%d: new UDP flows will be refused when it is reached',
                     soft, _FD_MARGIN)


async def _resolve(host: Optional[str], port: int, *, passive: bool
                   ) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host, port, type=SOCK_DGRAM,
        flags=socket.AI_PASSIVE if passive else 0)
    found: list[tuple[socket.AddressFamily, tuple[Any, ...]]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (AF_INET, AF_INET6) and \
                (family, sockaddr) not in found:
            found.append((family, tuple(sockaddr)))
    if not found:
        raise OSError(f'no IPv4 or IPv6 address for {host!r}')
    return found


def _bind(family: socket.AddressFamily, sockaddr: tuple[Any, ...]
          ) -> socket.socket:
    sock = socket.socket(family, SOCK_DGRAM)
    try:
        if family == AF_INET6:
            # As asyncio's create_server: IPv4 clients come to an IPv4
            # socket, never as mapped addresses.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            # Room for bursts (the kernel caps it at net.core.rmem_max).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        except OSError:
            pass
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_udp(listen: Union[HostPort, Iterable[HostPort]],
                    upstream: HostPort, *, version: Optional[int] = 2,
                    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                    max_flows: int = DEFAULT_MAX_FLOWS, crc32c: bool = False,
                    tlv: ProxyProtocolTLV = EMPTY_TLV,
                    pktinfo: Optional[bool] = None) -> UDPProxy:
    """Start a UDP proxy service: clients to ``listen``, each datagram on to
    ``upstream`` behind a PROXY v2 header.

    Args:
        listen: Where to listen: ``(host, port)`` or ``'HOST:PORT'``, or a
            list of them. Every address a host name resolves to is bound;
            no host (``(None, port)``, ``':PORT'``) binds ``0.0.0.0`` and
            ``::``.
        upstream: Where to forward; resolved once, now (the first address).
        version: 2, or None to forward payloads without a header.
        idle_timeout: Seconds without a datagram either way after which a
            client's flow is closed (checked every quarter of it, at most
            every second).
        max_flows: The most clients at once; datagrams from more are
            dropped. The open-file limit is raised to fit if it can be.
        crc32c: Add a CRC32C TLV to every header.
        tlv: TLVs for every header (e.g. ``ProxyProtocolTLV(authority=
            'example.com')``).
        pktinfo: Read each datagram's destination from the packet (Linux
            ``IP_PKTINFO``); by default, only for wildcard addresses.

    Raises:
        ValueError: A setting is out of range.
        OSError: An address cannot be resolved or bound.

    """
    up_host, up_port = parse_host_port(upstream)
    up_family, up_addr = (await _resolve(up_host, up_port,
                                         passive=False))[0]
    service = UDPProxy(up_addr, up_family, version=version,
                       idle_timeout=idle_timeout, max_flows=max_flows,
                       crc32c=crc32c, tlv=tlv)
    if version is not None:
        # Fail now, not on the first datagram, if the TLVs cannot be sent.
        pack_v2(result_from_sockaddrs(None, None, tlv=tlv), crc32c=crc32c)
    targets = [listen] if isinstance(listen, (str, tuple)) else list(listen)
    if not targets:
        raise ValueError('nothing to listen on')
    _ensure_descriptors(max_flows + _FD_MARGIN)
    try:
        for target in targets:
            host, port = parse_host_port(target)
            for family, sockaddr in await _resolve(host, port, passive=True):
                sock = _bind(family, sockaddr)
                wildcard = ip_address(sockaddr[0].split('%', 1)[0]) \
                    .is_unspecified
                use = (wildcard and sys.platform == 'linux') \
                    if pktinfo is None else pktinfo
                service._listen(sock, use and _enable_pktinfo(sock))
    except BaseException:
        service.close()
        raise
    for address in service.addresses:
        _log.info('UDP service on %s -> %s (%s)', _format(address),
                  _format(up_addr),
                  'no header' if version is None else 'PROXY v2')
    return service


def _format(address: tuple[Any, ...]) -> str:
    host = str(address[0])
    return f'[{host}]:{address[1]}' if ':' in host else \
        f'{host}:{address[1]}'


# The echo service

class EchoDatagramProtocol(ProxiedDatagramProtocol):
    """Echo every datagram to its original client, through its proxy.

    The first datagram of each client (and again after a quiet spell, when
    the client has dropped out of the :data:`remembered` most recent ones)
    is logged at INFO with the client, the real sender and the address the
    client sent to; every datagram at DEBUG.

    """

    #: How many (client, sender) pairs are remembered for logging.
    remembered = 4096

    def __init__(self) -> None:
        self.transport: Optional[ProxiedDatagramTransport] = None
        self.closed: asyncio.Future[None] = \
            asyncio.get_running_loop().create_future()
        self._seen: dict[Any, None] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, ProxiedDatagramTransport)
        self.transport = transport

    def proxied_datagram_received(self, data: bytes,
                                  info: ConnectionInfo) -> None:
        pair = (info.peername, info.socket_peername)
        seen = self._seen
        if pair in seen:
            _log.debug('udp echo: %d bytes from %s via %s', len(data),
                       info.peername, info.socket_peername)
        else:
            if len(seen) >= self.remembered:
                del seen[next(iter(seen))]
            seen[pair] = None
            via = 'directly' if not info.proxied \
                else f'via {info.socket_peername}'
            _log.info('udp echo: client %s %s, to %s (%d bytes)',
                      info.peername, via, info.sockname, len(data))
        assert self.transport is not None
        self.transport.sendto(data, info)

    def error_received(self, exc: Exception) -> None:
        _log.debug('udp echo: %s', exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class UDPEchoServer:
    """A running UDP echo service; made by :func:`serve_udp_echo`."""

    def __init__(self, endpoints: list[tuple[ProxiedDatagramTransport,
                                             EchoDatagramProtocol]]) -> None:
        self._endpoints = endpoints

    @property
    def transports(self) -> list[ProxiedDatagramTransport]:
        """The endpoints' transports."""
        return [transport for transport, _ in self._endpoints]

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """The listening addresses (with the ports chosen for port 0)."""
        return [tuple(transport.get_extra_info('sockname'))
                for transport, _ in self._endpoints]

    @property
    def stats(self) -> DatagramStats:
        """The counters of all endpoints, added up now."""
        total = DatagramStats()
        for transport, _ in self._endpoints:
            for name, value in transport.stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total

    def close(self) -> None:
        """Stop listening."""
        for transport, _ in self._endpoints:
            transport.close()

    async def wait_closed(self) -> None:
        """Wait until every endpoint is closed."""
        for _, protocol in self._endpoints:
            await protocol.closed

    async def __aenter__(self) -> UDPEchoServer:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()


async def serve_udp_echo(listen: Union[HostPort, Iterable[HostPort]], *,
                         config: HeaderConfig = DEFAULT_CONFIG,
                         reply_header: bool = False,
                         on_drop: Optional[DropCallback] = None,
                         max_routes: int = DEFAULT_MAX_ROUTES,
                         route_timeout: float = DEFAULT_ROUTE_TIMEOUT
                         ) -> UDPEchoServer:
    """Start a UDP echo service that reads a PROXY v2 header in front of
    every datagram (under ``config``) and echoes the payload to the
    original client through the proxy it came from.

    Args:
        listen: As for :func:`serve_udp`.
        config: Who must send a header; see
            :class:`~proxyprotocol.aio.datagram.HeaderDatagramProtocol`.
        reply_header: Put a v2 header in front of the echoes.
        on_drop: Called as ``on_drop(sender, exception)`` for each datagram
            dropped by the policy or for want of a valid header.
        max_routes: How many clients replies can be routed to.
        route_timeout: Seconds during which replies to a client are
            routed after its last datagram.

    """
    loop = asyncio.get_running_loop()
    factory = wrap_datagram_protocol_factory(
        EchoDatagramProtocol, config, reply_header=reply_header,
        on_drop=on_drop, max_routes=max_routes, route_timeout=route_timeout)
    targets = [listen] if isinstance(listen, (str, tuple)) else list(listen)
    if not targets:
        raise ValueError('nothing to listen on')
    endpoints: list[tuple[ProxiedDatagramTransport,
                          EchoDatagramProtocol]] = []
    try:
        for target in targets:
            host, port = parse_host_port(target)
            for family, sockaddr in await _resolve(host, port, passive=True):
                sock = _bind(family, sockaddr)
                _, protocol = await loop.create_datagram_endpoint(
                    factory, sock=sock)
                transport, app = protocol.transport, protocol.app_protocol
                assert transport is not None
                assert isinstance(app, EchoDatagramProtocol)
                endpoints.append((transport, app))
                _log.info('UDP echo service on %s', _format(
                    tuple(transport.get_extra_info('sockname'))))
    except BaseException:
        for transport, _ in endpoints:
            transport.close()
        raise
    return UDPEchoServer(endpoints)
