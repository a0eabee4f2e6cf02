"""DNSBL lookups against a small DNS server run by the test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
from ipaddress import IPv4Address
from typing import Any, Awaitable, Callable, Optional, TypeVar, cast

import pytest

from proxyprotocol.dnsbl import (DEFAULT_TIMEOUT, BasicDnsbl, Dnsbl,
                                 NoopDnsbl, SpamhausDnsbl, query_a)
from proxyprotocol.sock import SocketInfo, SocketInfoLocal

pytestmark = pytest.mark.timeout(60)

T = TypeVar('T')
WAIT = 10.0


class Transport:
    """A transport's ``get_extra_info``, backed by a dict."""

    def __init__(self, **extra: Any) -> None:
        self.extra = extra

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def client(peer: Any) -> SocketInfo:
    return SocketInfoLocal(Transport(peername=peer))


class Responder(asyncio.DatagramProtocol):
    """Answers A queries from a table; unknown names get NXDOMAIN.

    Names in ``silent`` get no answer; names in ``spoof_first`` first get
    an answer with the wrong ID (which the client must ignore).

    """

    def __init__(self, records: dict[str, list[str]],
                 silent: frozenset[str] = frozenset(),
                 spoof_first: frozenset[str] = frozenset()) -> None:
        self.records = records
        self.silent = silent
        self.spoof_first = spoof_first
        self.queries: list[str] = []
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ident, flags, qdcount = struct.unpack_from('!HHH', data)
        assert flags & 0x8000 == 0 and qdcount == 1
        labels, pos = [], 12
        while data[pos]:
            labels.append(data[pos + 1:pos + 1 + data[pos]].decode())
            pos += 1 + data[pos]
        qtype, qclass = struct.unpack_from('!HH', data, pos + 1)
        assert (qtype, qclass) == (1, 1)
        question = data[12:pos + 5]
        name = '.'.join(labels)
        self.queries.append(name)
        if name in self.silent:
            return
        assert self.transport is not None
        if name in self.spoof_first:
            self.transport.sendto(self.answer(ident ^ 1, question,
                                              ['127.0.0.2']), addr)
        self.transport.sendto(
            self.answer(ident, question, self.records.get(name)), addr)

    @staticmethod
    def answer(ident: int, question: bytes,
               addresses: Optional[list[str]]) -> bytes:
        rcode = 3 if addresses is None else 0
        count = len(addresses or ())
        message = struct.pack('!HHHHHH', ident, 0x8180 | rcode, 1, count,
                              0, 0) + question
        for address in addresses or ():
            # The owner name as a pointer to the question (offset 12).
            message += struct.pack('!HHHIH', 0xC00C, 1, 1, 60, 4) \
                + IPv4Address(address).packed
        return message


def with_responder(responder: Responder,
                   body: Callable[[tuple[str, int]], Awaitable[T]]) -> T:
    async def main() -> T:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: responder, local_addr=('127.0.0.1', 0))
        try:
            host, port = transport.get_extra_info('sockname')[:2]
            return await asyncio.wait_for(body((host, port)), WAIT)
        finally:
            transport.close()
    return asyncio.run(main())


RECORDS = {
    '5.2.0.192.bl.test': ['127.0.0.2'],
    '5.2.0.192.zen.spamhaus.org': ['127.0.0.2'],
    '6.2.0.192.zen.spamhaus.org': ['127.0.0.5', '127.0.0.2'],
    '7.2.0.192.zen.spamhaus.org': ['127.0.0.11'],
    '8.2.0.192.zen.spamhaus.org': ['127.0.0.100'],
    '9.2.0.192.zen.spamhaus.org': ['127.0.0.3'],
}


def test_basic_listed_and_not_listed() -> None:
    responder = Responder(RECORDS)

    async def body(ns: tuple[str, int]) -> tuple[Any, ...]:
        dnsbl = Dnsbl.load('bl.test', timeout=2, nameserver=ns)
        assert type(dnsbl) is BasicDnsbl
        return (await dnsbl.lookup(client(('192.0.2.5', 1))),
                await dnsbl.lookup(client(('192.0.2.99', 1))),
                await dnsbl.lookup(client(('::ffff:192.0.2.5', 1, 0, 0))))
    listed, clean, mapped = with_responder(responder, body)
    assert listed == 'bl.test' and clean is None and mapped == 'bl.test'
    assert responder.queries == ['5.2.0.192.bl.test', '99.2.0.192.bl.test',
                                 '5.2.0.192.bl.test']


def test_spamhaus_categories() -> None:
    responder = Responder(RECORDS)

    async def body(ns: tuple[str, int]) -> list[Optional[str]]:
        dnsbl = Dnsbl.load('zen.spamhaus.org', nameserver=ns)
        assert type(dnsbl) is SpamhausDnsbl
        return [await dnsbl.lookup(client((f'192.0.2.{i}', 1)))
                for i in (5, 6, 7, 8, 9, 10)]
    assert with_responder(responder, body) == [
        'https://www.spamhaus.org/sbl/',
        'https://www.spamhaus.org/xbl/',   # the first address counts
        'https://www.spamhaus.org/pbl/',
        'zen.spamhaus.org',
        'https://www.spamhaus.org/css/',
        None,
    ]


def test_timeout_counts_as_not_listed() -> None:
    responder = Responder(RECORDS, silent=frozenset({'5.2.0.192.bl.test'}))

    async def body(ns: tuple[str, int]) -> Optional[str]:
        return await BasicDnsbl('bl.test', 0.2, nameserver=ns).lookup(
            client(('192.0.2.5', 1)))
    assert with_responder(responder, body) is None
    assert responder.queries == ['5.2.0.192.bl.test']


def test_spoofed_id_is_ignored() -> None:
    responder = Responder({'5.2.0.192.bl.test': []},
                          spoof_first=frozenset({'5.2.0.192.bl.test'}))

    async def body(ns: tuple[str, int]) -> Optional[str]:
        return await BasicDnsbl('bl.test', 2, nameserver=ns).lookup(
            client(('192.0.2.5', 1)))
    # The forged answer said "listed"; the real one has no addresses.
    assert with_responder(responder, body) is None


def test_query_a_directly() -> None:
    responder = Responder({'two.example': ['192.0.2.1', '192.0.2.2']})

    async def body(ns: tuple[str, int]) -> tuple[Any, Any]:
        return (await query_a('two.example', ns),
                await query_a('none.example', ns))
    found, missing = with_responder(responder, body)
    assert found == [IPv4Address('192.0.2.1'), IPv4Address('192.0.2.2')]
    assert missing == []


def test_unreachable_server_counts_as_not_listed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(('127.0.0.1', 0))
        port = closed.getsockname()[1]
    dnsbl = BasicDnsbl('bl.test', 2, nameserver=('127.0.0.1', port))
    assert asyncio.run(dnsbl.lookup(client(('192.0.2.5', 1)))) is None


def test_ipv6_and_unix_clients_are_not_looked_up() -> None:
    responder = Responder(RECORDS)

    async def body(ns: tuple[str, int]) -> tuple[Any, Any]:
        dnsbl = BasicDnsbl('bl.test', 2, nameserver=ns)
        return (await dnsbl.lookup(client(('2001:db8::1', 1, 0, 0))),
                await dnsbl.lookup(client('/run/x.sock')))
    assert with_responder(responder, body) == (None, None)
    assert responder.queries == []


def test_system_resolver_timeout_is_swallowed() -> None:
    # The default path (loop.getaddrinfo) under a resolver that never
    # answers: 0.11 let this timeout escape on Python 3.10 and older.
    async def main() -> Optional[str]:
        loop = asyncio.get_running_loop()

        async def never(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(3600)
        setattr(loop, 'getaddrinfo', never)
        return await BasicDnsbl('bl.test', 0.2).lookup(
            client(('192.0.2.5', 1)), loop=loop)
    assert asyncio.run(main()) is None


def test_load_and_defaults() -> None:
    assert type(Dnsbl.load(None)) is NoopDnsbl
    assert asyncio.run(NoopDnsbl().lookup(client(('192.0.2.5', 1)))) is None
    basic = Dnsbl.load('bl.example')
    assert isinstance(basic, BasicDnsbl)
    assert basic.timeout == DEFAULT_TIMEOUT  # never unbounded
    assert basic.host == 'bl.example' and basic.nameserver is None
    assert BasicDnsbl('x', 1.5).timeout == 1.5
    assert BasicDnsbl('x', None).query_name(IPv4Address('1.2.3.4')) == \
        '4.3.2.1.x'
    with pytest.raises(ValueError):
        BasicDnsbl('x', 0)
