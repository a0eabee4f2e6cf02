"""The datagram endpoint (:mod:`proxyprotocol.aio.datagram`) over loopback.

A test peer plays the proxy: it sends datagrams with a v2 header in front
(claiming clients from documentation address ranges) to an endpoint on
127.0.0.1 or ::1, and receives the replies.

"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, Optional

import pytest

from support.loops import LOOPS, run
from adapter_support import CLIENT_V4, CLIENT_V6, SERVICE_V4, SERVICE_V6
from udp_support import HOSTS, peer, until

from proxyprotocol import (ProxyProtocolChecksumError, ProxyProtocolError,
                           build_datagram, build_header, parse_datagram)
from proxyprotocol.acceptor import (ConnectionInfo,
                                    ProxyProtocolRejectedError)
from proxyprotocol.aio.datagram import (DatagramStats, HeaderDatagramProtocol,
                                        ProxiedDatagramProtocol,
                                        ProxiedDatagramTransport,
                                        create_datagram_endpoint,
                                        wrap_datagram_protocol_factory)
from proxyprotocol.policy import HeaderConfig, Policy
from proxyprotocol.result import ProxyResultLocal
from proxyprotocol.sockaddr import result_from_sockaddrs
from proxyprotocol.tlv import ProxyProtocolTLV

pytestmark = pytest.mark.timeout(60)


def addresses(host: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """The client and service a header claims, in the host's family."""
    return (CLIENT_V4, SERVICE_V4) if ':' not in host \
        else (CLIENT_V6, SERVICE_V6)


def peername(address: tuple[str, int]) -> tuple[Any, ...]:
    """An address as a socket of its family gives it."""
    return address if ':' not in address[0] else (*address, 0, 0)


def datagram(client: Any, service: Any, payload: bytes, **kwargs: Any
             ) -> bytes:
    """A v2 header for ``client`` -> ``service`` (DGRAM), then payload."""
    crc32c = kwargs.pop('crc32c', False)
    protocol = kwargs.pop('protocol', socket.SOCK_DGRAM)
    result = result_from_sockaddrs(client, service, protocol=protocol,
                                   **kwargs)
    return build_datagram(result, payload, crc32c=crc32c)


class Recorder(ProxiedDatagramProtocol):
    """Records every datagram with its details; replies on request."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, ConnectionInfo]] = \
            asyncio.Queue()
        self.transport: Optional[ProxiedDatagramTransport] = None
        self.lost: list[Optional[Exception]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, ProxiedDatagramTransport)
        self.transport = transport

    def proxied_datagram_received(self, data: bytes,
                                  info: ConnectionInfo) -> None:
        self.received.put_nowait((data, info))

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost.append(exc)

    async def next(self) -> tuple[bytes, ConnectionInfo]:
        """The next datagram delivered (bounded wait)."""
        return await asyncio.wait_for(self.received.get(), 10.0)


class PlainEcho(asyncio.DatagramProtocol):
    """An ordinary datagram protocol: echoes ``data`` to ``addr``."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, Any]] = []
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen.append((data, addr))
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def open_endpoint(host: str, factory: Any = Recorder, **kwargs: Any
                        ) -> tuple[ProxiedDatagramTransport, Any]:
    """An endpoint on ``host`` (ephemeral port) for the test."""
    return await create_datagram_endpoint(factory, (host, 0), **kwargs)


def local(transport: ProxiedDatagramTransport) -> tuple[Any, ...]:
    """The endpoint's address."""
    return tuple(transport.get_extra_info('sockname'))


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('host', HOSTS)
def test_original_client_and_raw_reply(host: str, loop_kind: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        transport, app = await open_endpoint(host, PlainEcho)
        proxy = await peer(host)
        try:
            proxy.send(datagram(client, service, b'ping'), local(transport))
            data, sender = await proxy.receive()
            # The application saw the original client; the reply went back
            # to the proxy, without a header.
            assert app.seen == [(b'ping', peername(client))]
            assert data == b'ping'
            assert sender[:2] == local(transport)[:2]
            stats = transport.stats
            assert (stats.received, stats.delivered, stats.sent,
                    stats.dropped) == (1, 1, 1, 0)
        finally:
            proxy.close()
            transport.close()
    run(main, loop_kind)


@pytest.mark.parametrize('host', HOSTS)
def test_datagram_details(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        transport, app = await open_endpoint(host)
        proxy = await peer(host)
        try:
            tlv = ProxyProtocolTLV(authority='example.com', unique_id=b'u1')
            proxy.send(datagram(client, service, b'data', tlv=tlv,
                                crc32c=True), local(transport))
            data, info = await app.next()
            assert data == b'data'
            assert info.peername == peername(client)
            assert info.sockname == peername(service)
            assert info.socket_peername[:2] == proxy.address[:2]
            assert info.socket_sockname[:2] == local(transport)[:2]
            assert info.proxied and info.trusted
            assert info.policy is Policy.REQUIRE
            assert info.version == 2
            assert info.result is not None
            assert info.result.protocol == socket.SOCK_DGRAM
            assert info.tlv.authority == 'example.com'
            assert info.tlv.unique_id == b'u1'
            assert transport.info_for(client) is info
            assert transport.info_for(peername(client)) is info
            assert transport.info_for(('192.0.2.55', 1)) is None
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('host', HOSTS)
def test_many_clients_replies_go_through_their_proxy(
        host: str, loop_kind: str) -> None:
    _, service = addresses(host)
    base = '203.0.113.' if ':' not in host else '2001:db8::'

    async def main() -> None:
        transport, app = await open_endpoint(host, PlainEcho)
        proxies = [await peer(host) for _ in range(3)]
        try:
            clients = [(f'{base}{i + 1}', 20000 + i) for i in range(60)]
            for i, client in enumerate(clients):
                proxies[i % 3].send(
                    datagram(client, service, b'client-%d' % i),
                    local(transport))
            got: dict[int, int] = {}
            for index, proxy in enumerate(proxies):
                for _ in range(20):
                    data, _ = await proxy.receive()
                    got[int(data.split(b'-')[1])] = index
            assert got == {i: i % 3 for i in range(60)}
            assert sorted(addr for _, addr in app.seen) == \
                sorted(peername(c) for c in clients)
            # Client 0 now comes through another proxy: replies follow it.
            proxies[1].send(datagram(clients[0], service, b'client-0'),
                            local(transport))
            data, _ = await proxies[1].receive()
            assert data == b'client-0'
            assert transport.stats.sent == 61
        finally:
            for proxy in proxies:
                proxy.close()
            transport.close()
    run(main, loop_kind)


@pytest.mark.parametrize('host', HOSTS)
def test_untrusted_sender_dropped_and_counted(host: str) -> None:
    client, service = addresses(host)
    drops: list[tuple[Any, BaseException]] = []

    async def main() -> None:
        config = HeaderConfig(trusted=['192.0.2.0/24'])
        transport, app = await open_endpoint(
            host, config=config, on_drop=lambda *a: drops.append(a))
        proxy = await peer(host)
        try:
            for _ in range(3):
                proxy.send(datagram(client, service, b'x'),
                           local(transport))
            await until(lambda: transport.stats.received == 3)
            assert app.received.empty()
            assert transport.stats.as_dict() == {
                'received': 3, 'delivered': 0, 'rejected': 3,
                'invalid': 0, 'sent': 0, 'unroutable': 0}
            assert len(drops) == 3
            sender, exc = drops[0]
            assert sender[:2] == proxy.address[:2]
            assert isinstance(exc, ProxyProtocolRejectedError)
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_untrusted_ignored_header_is_never_believed(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        config = HeaderConfig(trusted=['192.0.2.0/24'],
                              untrusted_policy='ignore')
        transport, app = await open_endpoint(host, config=config)
        proxy = await peer(host)
        try:
            sent = datagram(client, service, b'x')
            proxy.send(sent, local(transport))
            data, info = await app.next()
            assert data == sent
            assert info.peername[:2] == proxy.address[:2]
            assert info.header is None and not info.trusted
            assert info.policy is Policy.IGNORE
        finally:
            proxy.close()
            transport.close()
    run(main)


def _bad_crc(client: Any, service: Any) -> bytes:
    data = bytearray(datagram(client, service, b'payload', crc32c=True))
    data[-8] ^= 0xFF  # inside the CRC32C TLV's value
    return bytes(data)


def _long_length(client: Any, service: Any) -> bytes:
    data = bytearray(datagram(client, service, b''))
    data[14:16] = (len(data) - 16 + 50).to_bytes(2, 'big')
    return bytes(data)


INVALID: dict[str, Callable[[Any, Any], bytes]] = {
    'no header': lambda c, s: b'just a payload',
    'empty': lambda c, s: b'',
    'cut header': lambda c, s: datagram(c, s, b'')[:20],
    'length past the end': _long_length,
    'bad checksum': _bad_crc,
    'v1 header': lambda c, s: b'PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nx',
    'stream header': lambda c, s: datagram(c, s, b'x',
                                           protocol=socket.SOCK_STREAM),
    'too long': lambda c, s: datagram(
        c, s, b'x', tlv=ProxyProtocolTLV(authority='a' * 200)),
}


@pytest.mark.parametrize('case', sorted(INVALID))
@pytest.mark.parametrize('host', HOSTS)
def test_invalid_datagram_dropped_and_counted(host: str, case: str) -> None:
    client, service = addresses(host)
    drops: list[tuple[Any, BaseException]] = []

    async def main() -> None:
        config = HeaderConfig(max_length=128)
        transport, app = await open_endpoint(
            host, config=config, on_drop=lambda *a: drops.append(a))
        proxy = await peer(host)
        try:
            proxy.send(INVALID[case](client, service), local(transport))
            proxy.send(datagram(client, service, b'good'), local(transport))
            await until(lambda: transport.stats.received == 2)
            data, info = await app.next()
            assert data == b'good' and info.peername == peername(client)
            assert app.received.empty()
            stats = transport.stats
            assert (stats.invalid, stats.delivered, stats.rejected) == \
                (1, 1, 0)
            assert len(drops) == 1
            assert isinstance(drops[0][1], ProxyProtocolError)
            if case == 'bad checksum':
                assert isinstance(drops[0][1], ProxyProtocolChecksumError)
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_optional_policy(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        config = HeaderConfig(trusted_policy=Policy.OPTIONAL)
        transport, app = await open_endpoint(host, config=config)
        proxy = await peer(host)
        try:
            proxy.send(b'raw', local(transport))
            data, info = await app.next()
            assert data == b'raw' and info.header is None
            assert info.peername[:2] == proxy.address[:2]
            proxy.send(datagram(client, service, b'wrapped'),
                       local(transport))
            data, info = await app.next()
            assert data == b'wrapped'
            assert info.peername == peername(client)
            # A header that starts right but is broken is not app data.
            proxy.send(datagram(client, service, b'x')[:24],
                       local(transport))
            await until(lambda: transport.stats.received == 3)
            assert transport.stats.invalid == 1
            assert app.received.empty()
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_local_header_means_the_real_sender(host: str) -> None:

    async def main() -> None:
        transport, app = await open_endpoint(host, PlainEcho)
        proxy = await peer(host)
        try:
            proxy.send(build_header(ProxyResultLocal()) + b'health',
                       local(transport))
            data, _ = await proxy.receive()
            assert data == b'health'
            assert len(app.seen) == 1
            assert app.seen[0][1][:2] == proxy.address[:2]
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_reply_header(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        transport, _ = await open_endpoint(host, PlainEcho,
                                           reply_header=True)
        proxy = await peer(host)
        try:
            proxy.send(datagram(client, service, b'hi'), local(transport))
            data, _ = await proxy.receive()
            parsed, payload = parse_datagram(data)
            assert bytes(payload) == b'hi'
            result = parsed.result
            assert result.peername == peername(service)
            assert result.sockname == peername(client)
            assert result.protocol == socket.SOCK_DGRAM
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_unroutable_reply_dropped(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        transport, app = await open_endpoint(host)
        proxy = await peer(host)
        try:
            proxy.send(datagram(client, service, b'a'), local(transport))
            _, info = await app.next()
            transport.sendto(b'nowhere', ('198.51.100.99', 9))
            transport.sendto(b'back', client)
            data, _ = await proxy.receive()
            assert data == b'back'
            assert (transport.stats.unroutable, transport.stats.sent) == \
                (1, 1)
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_routes_expire(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        transport, app = await open_endpoint(host, route_timeout=0.2)
        proxy = await peer(host)
        try:
            proxy.send(datagram(client, service, b'a'), local(transport))
            await app.next()
            assert transport.info_for(client) is not None
            await asyncio.sleep(0.4)
            assert transport.info_for(client) is None
            transport.sendto(b'late', client)
            assert transport.stats.unroutable == 1
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_route_table_is_bounded(host: str) -> None:
    _, service = addresses(host)
    base = '203.0.113.' if ':' not in host else '2001:db8::'

    async def main() -> None:
        transport, app = await open_endpoint(host, max_routes=2)
        proxy = await peer(host)
        try:
            clients = [(f'{base}{i + 1}', 1000) for i in range(3)]
            for client in clients:
                proxy.send(datagram(client, service, b'x'),
                           local(transport))
                await app.next()
            assert transport.info_for(clients[0]) is None
            transport.sendto(b'first', clients[0])
            transport.sendto(b'last', clients[2])
            data, _ = await proxy.receive()
            assert data == b'last'
            assert transport.stats.unroutable == 1
        finally:
            proxy.close()
            transport.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_reply_to_a_datagrams_info(host: str) -> None:
    client, service = addresses(host)

    async def main() -> None:
        transport, app = await open_endpoint(host)
        first, second = await peer(host), await peer(host)
        try:
            first.send(datagram(client, service, b'1'), local(transport))
            _, info1 = await app.next()
            second.send(datagram(client, service, b'2'), local(transport))
            _, info2 = await app.next()
            transport.sendto(b'to-first', info1)
            transport.sendto(b'to-latest', client)
            assert (await first.receive())[0] == b'to-first'
            assert (await second.receive())[0] == b'to-latest'
            assert info2.socket_peername[:2] == second.address[:2]
        finally:
            first.close()
            second.close()
            transport.close()
    run(main)


def test_plain_loop_api_and_close() -> None:
    lost: list[Optional[Exception]] = []

    class App(Recorder):
        def connection_lost(self, exc: Optional[Exception]) -> None:
            lost.append(exc)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        factory = wrap_datagram_protocol_factory(App)
        raw, protocol = await loop.create_datagram_endpoint(
            factory, local_addr=('127.0.0.1', 0))
        assert isinstance(protocol, HeaderDatagramProtocol)
        transport = protocol.transport
        assert transport is not None and isinstance(protocol.stats,
                                                    DatagramStats)
        assert transport.real_transport is raw
        assert transport.get_extra_info('sockname') == \
            raw.get_extra_info('sockname')
        assert isinstance(transport.get_protocol(), App)
        assert not transport.is_closing()
        transport.close()
        await until(lambda: bool(lost))
        assert lost == [None]
    run(main)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        wrap_datagram_protocol_factory(Recorder, HeaderConfig(versions=(1,)))
    with pytest.raises(ValueError):
        wrap_datagram_protocol_factory(Recorder, max_routes=0)
    with pytest.raises(ValueError):
        wrap_datagram_protocol_factory(Recorder, route_timeout=0)
    # No header is ever read: v2 need not be accepted.
    wrap_datagram_protocol_factory(Recorder, HeaderConfig(
        versions=(1,), trusted_policy='ignore', untrusted_policy='reject'))
    assert DatagramStats().as_dict()['received'] == 0
