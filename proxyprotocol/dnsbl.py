"""Look up clients in a DNS blocklist (DNSBL), as the 0.11 proxy did.

A DNSBL answers an A query for ``d.c.b.a.<zone>`` when the IPv4 address
``a.b.c.d`` is listed; no answer (NXDOMAIN) means "not listed". The 0.11 API
is kept: :meth:`Dnsbl.load` picks :class:`NoopDnsbl`, :class:`SpamhausDnsbl`
or :class:`BasicDnsbl`, and ``await dnsbl.lookup(sock_info)`` gives a string
for listed clients, else None.

Fixed from 0.11: a lookup always has a timeout (:data:`DEFAULT_TIMEOUT`
unless another is given), and a timeout, like any resolver failure, counts
as "not listed" on every Python version (0.11 let the timeout escape on
Python 3.10 and older, and waited forever by default).

By default names are resolved through the system resolver
(``loop.getaddrinfo``). With ``nameserver=(host, port)``, a small built-in
client sends the A query over UDP to that server instead, which allows a
dedicated resolver, or a test server on a loopback port.

"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from abc import ABCMeta, abstractmethod
from asyncio import AbstractEventLoop
from ipaddress import IPv4Address, IPv4Network, ip_address
from socket import AF_INET, AF_INET6, SOCK_STREAM
from typing import Final, Optional, Sequence

from .sock import SocketInfo

__all__ = ['Dnsbl', 'NoopDnsbl', 'BasicDnsbl', 'SpamhausDnsbl',
           'DEFAULT_TIMEOUT', 'query_a']

_log = logging.getLogger(__name__)

#: Seconds a lookup may take when no timeout is given. A DNSBL answers
#: from a nearby resolver in milliseconds; a lookup that takes longer is
#: treated as "not listed" rather than holding the connection.
DEFAULT_TIMEOUT: Final = 2.0

_HEADER = struct.Struct('!HHHHHH')
_RR = struct.Struct('!HHIH')
_TYPE_A = 1
_CLASS_IN = 1
_RCODE_NXDOMAIN = 3


class DnsQueryError(Exception):
    """The DNS server's answer could not be used."""


def _encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip('.').split('.'):
        raw = label.encode('idna') if not label.isascii() \
            else label.encode('ascii')
        if not 0 < len(raw) < 64:
            raise ValueError(f'invalid DNS name {name!r}')
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f'DNS name too long: {name!r}')
    return bytes(out)


def _skip_name(data: bytes, pos: int) -> int:
    # Skips a (possibly compressed) name; returns the position after it.
    for _ in range(128):
        if pos >= len(data):
            raise DnsQueryError('truncated name')
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length & 0xC0:
            raise DnsQueryError('invalid label')
        pos += 1 + length
    raise DnsQueryError('name too long')


def _parse_response(data: bytes, query_id: int,
                    question: bytes) -> list[IPv4Address]:
    if len(data) < _HEADER.size:
        raise DnsQueryError('short response')
    ident, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data)
    if ident != query_id or not flags & 0x8000:
        raise DnsQueryError('not a response to our query')
    rcode = flags & 0x000F
    if rcode == _RCODE_NXDOMAIN:
        return []
    if rcode != 0:
        raise DnsQueryError(f'DNS error code {rcode}')
    pos = _HEADER.size
    if qdcount != 1 or \
            data[pos:pos + len(question)].lower() != question.lower():
        raise DnsQueryError('the response is for another question')
    pos += len(question)
    addresses = []
    for _ in range(ancount):
        pos = _skip_name(data, pos)
        if pos + _RR.size > len(data):
            raise DnsQueryError('truncated record')
        rtype, rclass, _, rdlength = _RR.unpack_from(data, pos)
        pos += _RR.size
        rdata = data[pos:pos + rdlength]
        if len(rdata) != rdlength:
            raise DnsQueryError('truncated record')
        pos += rdlength
        if rtype == _TYPE_A and rclass == _CLASS_IN and rdlength == 4:
            addresses.append(IPv4Address(rdata))
    return addresses


class _QueryProtocol(asyncio.DatagramProtocol):

    def __init__(self, query_id: int, question: bytes) -> None:
        self.query_id = query_id
        self.question = question
        self.answer: asyncio.Future[list[IPv4Address]] = \
            asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.answer.done():
            return
        try:
            addresses = _parse_response(data, self.query_id, self.question)
        except DnsQueryError as exc:
            _log.debug('ignoring DNS response: %s', exc)
            return
        self.answer.set_result(addresses)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or ConnectionError('closed'))


async def query_a(name: str, nameserver: tuple[str, int], *,
                  loop: Optional[AbstractEventLoop] = None
                  ) -> list[IPv4Address]:
    """Ask ``nameserver`` for the A records of ``name``, over UDP.

    A minimal stub resolver (one question, recursion desired, no retries,
    no TCP fallback) for DNSBL queries; put it under a timeout. NXDOMAIN
    gives an empty list; responses with another ID or question are
    ignored.

    Raises:
        OSError: The server could not be reached.
        ValueError: ``name`` is not a valid DNS name.

    """
    loop = loop or asyncio.get_running_loop()
    question = _encode_name(name) + struct.pack('!HH', _TYPE_A, _CLASS_IN)
    query_id = secrets.randbits(16)
    message = _HEADER.pack(query_id, 0x0100, 1, 0, 0, 0) + question
    host, port = nameserver
    family = AF_INET6 if ip_address(host).version == 6 else AF_INET
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _QueryProtocol(query_id, question),
        remote_addr=(host, port), family=family)
    try:
        transport.sendto(message)
        return await protocol.answer
    finally:
        transport.close()


class Dnsbl(metaclass=ABCMeta):
    """Looks up connecting IP addresses in a DNSBL."""

    __slots__: Sequence[str] = ()

    @abstractmethod
    async def lookup(self, sock_info: SocketInfo, *,
                     loop: Optional[AbstractEventLoop] = None
                     ) -> Optional[str]:
        """The DNSBL verdict on the client of ``sock_info``: a string if it
        is listed, else None. Timeouts and resolver failures count as
        "not listed".

        Args:
            sock_info: The connection.
            loop: The event loop (default: the running loop).

        """
        ...

    @classmethod
    def load(cls, host: Optional[str], *,
             timeout: Optional[float] = None,
             nameserver: Optional[tuple[str, int]] = None) -> Dnsbl:
        """The implementation that suits the DNSBL zone ``host``.

        Args:
            host: The DNSBL zone, e.g. ``'zen.spamhaus.org'``; None for no
                lookups.
            timeout: Seconds a lookup may take (:data:`DEFAULT_TIMEOUT` when
                None).
            nameserver: ``(ip, port)`` of a DNS server to ask directly,
                instead of the system resolver.

        """
        if host is None:
            return NoopDnsbl()
        if host.endswith('.spamhaus.org'):
            return SpamhausDnsbl(host, timeout=timeout, nameserver=nameserver)
        return BasicDnsbl(host, timeout=timeout, nameserver=nameserver)


class NoopDnsbl(Dnsbl):
    """No lookups: :meth:`lookup` always returns None."""

    __slots__: Sequence[str] = ()

    async def lookup(self, sock_info: SocketInfo, *,
                     loop: Optional[AbstractEventLoop] = None
                     ) -> Optional[str]:
        return None


class BasicDnsbl(Dnsbl):
    """A DNSBL whose verdict is its own name when the client is listed.

    Args:
        host: The DNSBL zone.
        timeout: Seconds a lookup may take (:data:`DEFAULT_TIMEOUT` when
            None).
        nameserver: ``(ip, port)`` of a DNS server to ask directly.

    """

    __slots__ = ('host', 'timeout', 'nameserver')

    def __init__(self, host: str, timeout: Optional[float], *,
                 nameserver: Optional[tuple[str, int]] = None) -> None:
        super().__init__()
        if timeout is not None and not timeout > 0:
            raise ValueError(f'timeout must be positive, not {timeout!r}')
        self.host: Final = host
        self.timeout: Final[float] = DEFAULT_TIMEOUT if timeout is None \
            else float(timeout)
        self.nameserver: Final = nameserver

    def map_results(self, addresses: Sequence[IPv4Address]) -> Optional[str]:
        """The verdict for the addresses the DNSBL answered: :attr:`host` if
        there are any, else None."""
        return self.host if addresses else None

    def query_name(self, ip: IPv4Address) -> str:
        """The name to look up for ``ip``: ``d.c.b.a.<host>``."""
        return '.'.join(reversed(str(ip).split('.'))) + '.' + self.host

    async def _resolve(self, name: str,
                       loop: AbstractEventLoop) -> list[IPv4Address]:
        if self.nameserver is not None:
            return await query_a(name, self.nameserver, loop=loop)
        infos = await loop.getaddrinfo(name, 0, family=AF_INET,
                                       type=SOCK_STREAM)
        return [IPv4Address(info[4][0]) for info in infos or ()]

    async def lookup(self, sock_info: SocketInfo, *,
                     loop: Optional[AbstractEventLoop] = None
                     ) -> Optional[str]:
        ip = sock_info.peername_ip
        if not isinstance(ip, IPv4Address):
            return self.map_results([])
        loop = loop or asyncio.get_running_loop()
        name = self.query_name(ip)
        try:
            addresses = await asyncio.wait_for(self._resolve(name, loop),
                                               self.timeout)
        except (OSError, asyncio.TimeoutError, DnsQueryError,
                ValueError) as exc:
            _log.debug('DNSBL lookup of %s failed: %r', name, exc)
            addresses = []
        return self.map_results(addresses)


class SpamhausDnsbl(BasicDnsbl):
    """A Spamhaus DNSBL: the verdict names the list the client is on."""

    __slots__ = ()

    _mapping: Final = (
        (IPv4Network('127.0.0.2/32'), 'https://www.spamhaus.org/sbl/'),
        (IPv4Network('127.0.0.3/32'), 'https://www.spamhaus.org/css/'),
        (IPv4Network('127.0.0.4/30'), 'https://www.spamhaus.org/xbl/'),
        (IPv4Network('127.0.0.10/31'), 'https://www.spamhaus.org/pbl/'))

    def map_results(self, addresses: Sequence[IPv4Address]) -> Optional[str]:
        if not addresses:
            return None
        first = addresses[0]
        for network, verdict in self._mapping:
            if first in network:
                return verdict
        return self.host
