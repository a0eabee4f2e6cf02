"""The UDP proxy service (:mod:`proxyprotocol.server.udp`) over loopback.

Clients and upstreams are test sockets on 127.0.0.1 or ::1, or the UDP
echo service (which reads the headers with the datagram endpoint), so the
proxy is checked both on the wire and end to end.

"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

import pytest

from support.loops import LOOPS, run
from support.net import HAS_IPV6
from udp_support import HOSTS, family, peer, until

from proxyprotocol import parse_datagram
from proxyprotocol.policy import HeaderConfig
from proxyprotocol.server.udp import (MAX_UDP_PAYLOAD, UDPProxy,
                                      parse_host_port, serve_udp,
                                      serve_udp_echo)
from proxyprotocol.tlv import ProxyProtocolTLV

pytestmark = pytest.mark.timeout(60)


async def proxy_to(upstream: Any, host: str, **kwargs: Any) -> UDPProxy:
    """A UDP proxy service on ``host`` (ephemeral port) to ``upstream``."""
    return await serve_udp((host, 0), upstream[:2], **kwargs)


def header_of(data: bytes) -> tuple[Any, bytes]:
    """The result in front of a forwarded datagram, and the payload."""
    parsed, payload = parse_datagram(data)
    return parsed.result, bytes(payload)


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('host', HOSTS)
def test_header_in_front_and_reply_back(host: str, loop_kind: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host)
        client = await peer(host)
        try:
            listen = proxy.addresses[0]
            client.send(b'hello', listen)
            data, flow_address = await upstream.receive()
            result, payload = header_of(data)
            assert payload == b'hello'
            assert result.family == family(host)
            assert result.protocol == socket.SOCK_DGRAM
            assert result.peername[:2] == client.address[:2]
            assert result.sockname[:2] == listen[:2]
            upstream.send(b'world', flow_address)
            reply, sender = await client.receive()
            assert reply == b'world'
            assert sender[:2] == listen[:2]
            stats = proxy.stats
            assert (stats.received, stats.forwarded, stats.replied,
                    stats.dropped, stats.errors) == (1, 1, 1, 0, 0)
            assert proxy.flow_count == 1
            assert proxy.flows() == [(client.address, listen)]
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main, loop_kind)


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('host', HOSTS)
def test_many_clients_get_their_own_replies(host: str,
                                            loop_kind: str) -> None:

    async def main() -> None:
        echo = await serve_udp_echo((host, 0))
        proxy = await proxy_to(echo.addresses[0], host)
        clients = [await peer(host) for _ in range(50)]
        try:
            listen = proxy.addresses[0]
            for round_no in range(3):
                for i, client in enumerate(clients):
                    client.send(b'%d-%d' % (i, round_no), listen)
            for i, client in enumerate(clients):
                got = {(await client.receive())[0] for _ in range(3)}
                assert got == {b'%d-%d' % (i, r) for r in range(3)}
            assert proxy.flow_count == 50
            assert sorted(c for c, _ in proxy.flows()) == \
                sorted(c.address for c in clients)
            assert proxy.stats.forwarded == proxy.stats.replied == 150
            stats = echo.stats
            assert (stats.delivered, stats.sent, stats.dropped) == \
                (150, 150, 0)
        finally:
            for client in clients:
                client.close()
            proxy.close()
            echo.close()
            await echo.wait_closed()
    run(main, loop_kind)


@pytest.mark.parametrize('host', HOSTS)
def test_one_upstream_socket_per_client(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host)
        first, second = await peer(host), await peer(host)
        try:
            listen = proxy.addresses[0]
            sources = set()
            for n in range(5):
                first.send(b'%d' % n, listen)
                data, source = await upstream.receive()
                sources.add(source)
                assert header_of(data)[0].peername[:2] == first.address[:2]
            second.send(b'x', listen)
            data, source = await upstream.receive()
            assert header_of(data)[0].peername[:2] == second.address[:2]
            assert len(sources) == 1 and source not in sources
            assert proxy.stats.flows_opened == 2
        finally:
            first.close()
            second.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_idle_flows_expire(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host, idle_timeout=0.2)
        client = await peer(host)
        try:
            listen = proxy.addresses[0]
            client.send(b'a', listen)
            await upstream.receive()
            assert proxy.flow_count == 1
            await until(lambda: proxy.flow_count == 0, what='expiry')
            assert proxy.stats.flows_expired == 1
            # The client comes back: a new flow, and it still works.
            client.send(b'b', listen)
            data, flow_address = await upstream.receive()
            assert header_of(data)[1] == b'b'
            assert proxy.stats.flows_opened == 2
            upstream.send(b'back', flow_address)
            assert (await client.receive())[0] == b'back'
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_replies_keep_a_flow_open(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host, idle_timeout=1.0)
        client = await peer(host)
        try:
            client.send(b'subscribe', proxy.addresses[0])
            _, flow_address = await upstream.receive()
            for _ in range(25):  # 2.5 s of replies, 2.5x the timeout
                upstream.send(b'update', flow_address)
                await client.receive()
                await asyncio.sleep(0.1)
            assert proxy.flow_count == 1
            assert proxy.stats.flows_expired == 0
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_flow_table_is_bounded(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host, max_flows=3,
                               idle_timeout=0.3)
        clients = [await peer(host) for _ in range(5)]
        try:
            listen = proxy.addresses[0]
            for client in clients[:3]:
                client.send(b'in', listen)
                await upstream.receive()
            for client in clients[3:]:
                client.send(b'out', listen)
            await until(lambda: proxy.stats.received == 5)
            assert proxy.flow_count == 3
            assert proxy.stats.dropped_no_flow == 2
            # Flows that exist still work, and nothing else came through.
            clients[0].send(b'again', listen)
            data, _ = await upstream.receive()
            assert header_of(data)[1] == b'again'
            assert upstream.received.empty()
            # Once the flows expire, there is room again.
            await until(lambda: proxy.flow_count == 0, what='expiry')
            clients[4].send(b'now', listen)
            data, _ = await upstream.receive()
            result, payload = header_of(data)
            assert payload == b'now'
            assert result.peername[:2] == clients[4].address[:2]
        finally:
            for client in clients:
                client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_header_and_payload_never_split(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host)
        client = await peer(host)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        try:
            listen = proxy.addresses[0]
            limit = MAX_UDP_PAYLOAD[family(host)]
            header = 16 + (12 if family(host) == socket.AF_INET else 36)
            client.send(b'a' * (limit - header + 1), listen)  # one too many
            client.send(b'b' * (limit - header), listen)      # just fits
            data, _ = await upstream.receive()
            assert len(data) == limit
            assert header_of(data)[1] == b'b' * (limit - header)
            assert upstream.received.empty()
            stats = proxy.stats
            assert (stats.received, stats.forwarded,
                    stats.dropped_too_big) == (2, 1, 1)
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_tlvs_and_checksum(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        tlv = ProxyProtocolTLV(authority='udp.example', unique_id=b'id')
        proxy = await proxy_to(upstream.address, host, tlv=tlv, crc32c=True)
        client = await peer(host)
        try:
            client.send(b'x', proxy.addresses[0])
            data, _ = await upstream.receive()
            result, payload = header_of(data)  # checks the CRC32C
            assert payload == b'x'
            assert result.tlv.authority == 'udp.example'
            assert result.tlv.unique_id == b'id'
            assert result.tlv.crc32c is not None
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_without_header(host: str) -> None:

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host, version=None)
        client = await peer(host)
        try:
            client.send(b'plain', proxy.addresses[0])
            data, flow_address = await upstream.receive()
            assert data == b'plain'
            upstream.send(b'reply', flow_address)
            assert (await client.receive())[0] == b'reply'
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.skipif(sys.platform != 'linux', reason='IP_PKTINFO is Linux')
@pytest.mark.parametrize('host', HOSTS)
def test_destination_from_the_packet(host: str) -> None:
    # What a wildcard listener does, on a loopback address.

    async def main() -> None:
        upstream = await peer(host)
        proxy = await proxy_to(upstream.address, host, pktinfo=True)
        client = await peer(host)
        try:
            listen = proxy.addresses[0]
            client.send(b'q', listen)
            data, flow_address = await upstream.receive()
            result, _ = header_of(data)
            assert result.sockname[:2] == listen[:2]
            assert result.peername[:2] == client.address[:2]
            upstream.send(b'a', flow_address)
            reply, sender = await client.receive()
            assert reply == b'a' and sender[:2] == listen[:2]
            assert proxy.flows() == [(client.address, listen)]
        finally:
            client.close()
            upstream.close()
            proxy.close()
    run(main)


@pytest.mark.parametrize('host', HOSTS)
def test_upstream_down_is_counted(host: str) -> None:

    async def main() -> None:
        with socket.socket(family(host), socket.SOCK_DGRAM) as closed:
            closed.bind((host, 0))
            nowhere = closed.getsockname()
        proxy = await proxy_to(nowhere, host)
        client = await peer(host)
        try:
            client.send(b'1', proxy.addresses[0])
            await until(lambda: proxy.stats.errors >= 1, what='an error')
            client.send(b'2', proxy.addresses[0])
            await until(lambda: proxy.stats.received == 2)
            assert proxy.is_serving() and proxy.flow_count == 1
        finally:
            client.close()
            proxy.close()
    run(main)


def test_close_and_context_manager() -> None:

    async def main() -> None:
        upstream = await peer('127.0.0.1')
        async with await proxy_to(upstream.address, '127.0.0.1') as proxy:
            client = await peer('127.0.0.1')
            client.send(b'x', proxy.addresses[0])
            await upstream.receive()
            sockets = proxy.sockets
            assert proxy.is_serving()
        assert not proxy.is_serving() and proxy.flow_count == 0
        assert all(sock.fileno() == -1 for sock in sockets)
        proxy.close()  # again: nothing happens
        await asyncio.wait_for(proxy.wait_closed(), 5)
        client.close()
        upstream.close()
    run(main)


@pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 loopback')
def test_several_listening_addresses() -> None:

    async def main() -> None:
        upstream = await peer('127.0.0.1')
        proxy = await serve_udp(['127.0.0.1:0', '[::1]:0'],
                                upstream.address)
        try:
            assert [a[0] for a in proxy.addresses] == ['127.0.0.1', '::1']
            for host, listen in zip(('127.0.0.1', '::1'), proxy.addresses):
                client = await peer(host)
                client.send(b'via ' + host.encode(), listen)
                data, _ = await upstream.receive()
                result, payload = header_of(data)
                assert payload == b'via ' + host.encode()
                assert result.peername[:2] == client.address[:2]
                client.close()
        finally:
            upstream.close()
            proxy.close()
    run(main)


def test_echo_logs_the_original_sender(caplog: pytest.LogCaptureFixture
                                       ) -> None:
    caplog.set_level(logging.INFO, logger='proxyprotocol.server.udp')

    async def main() -> tuple[Any, Any]:
        echo = await serve_udp_echo('127.0.0.1:0')
        proxy = await proxy_to(echo.addresses[0], '127.0.0.1')
        client = await peer('127.0.0.1')
        try:
            for _ in range(3):
                client.send(b'echo me', proxy.addresses[0])
                assert (await client.receive())[0] == b'echo me'
            return client.address, proxy.addresses[0]
        finally:
            client.close()
            proxy.close()
            echo.close()
            await echo.wait_closed()
    client, listen = run(main)
    lines = [r.getMessage() for r in caplog.records
             if 'udp echo: client' in r.getMessage()]
    assert len(lines) == 1  # the first datagram of the client only
    assert str(client) in lines[0] and 'via' in lines[0]
    assert str(listen) in lines[0]


def test_echo_drops_what_it_must() -> None:

    async def main() -> None:
        config = HeaderConfig(trusted=['192.0.2.0/24'])
        echo = await serve_udp_echo(('127.0.0.1', 0), config=config)
        proxy = await proxy_to(echo.addresses[0], '127.0.0.1')
        direct = await peer('127.0.0.1')
        try:
            direct.send(b'no header', echo.addresses[0])
            direct.sock.sendto(b'via proxy', proxy.addresses[0])
            await until(lambda: echo.stats.received == 2)
            stats = echo.stats
            assert (stats.rejected, stats.delivered, stats.sent) == (2, 0, 0)
        finally:
            direct.close()
            proxy.close()
            echo.close()
            await echo.wait_closed()
    run(main)


def test_settings_are_checked() -> None:

    async def main() -> None:
        upstream = ('127.0.0.1', 9)
        for bad in ({'version': 1}, {'idle_timeout': 0},
                    {'max_flows': 0}, {'max_flows': True}):
            with pytest.raises(ValueError):
                await serve_udp(('127.0.0.1', 0), upstream, **bad)
        with pytest.raises(ValueError):
            await serve_udp([], upstream)
        with pytest.raises(ValueError):
            await serve_udp(('127.0.0.1', 0), '127.0.0.1')
    run(main)


@pytest.mark.parametrize('text, expected', [
    ('127.0.0.1:80', ('127.0.0.1', 80)),
    ('[::1]:53', ('::1', 53)),
    (':5000', (None, 5000)),
    ('localhost:0', ('localhost', 0)),
    (('::1', 7), ('::1', 7)),
    ((None, 7), (None, 7)),
])
def test_parse_host_port(text: Any, expected: Any) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize('text', [
    '127.0.0.1', '::1:53', '[::1]53', 'host:http', 'host:70000', ('h',),
    ('h', -1), ('h', '80'),
])
def test_parse_host_port_errors(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)
