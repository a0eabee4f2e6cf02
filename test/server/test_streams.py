"""asyncio streams: ``proxyprotocol.aio.streams`` over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from support.loops import LOOPS, run
from adapter_support import (CLIENT_V4, CLIENT_V6, KINDS, SERVICE_V4, WAIT,
                             Listener, close, header, read_until_closed, serve,
                             unix_path)
from proxyprotocol import ProxyProtocolError, ProxyProtocolSyntaxError
from proxyprotocol.acceptor import (ConnectionInfo, ProxyProtocolEOFError,
                                    ProxyProtocolRejectedError,
                                    ProxyProtocolTimeoutError)
from proxyprotocol.aio import (read_proxy_header, start_server,
                               start_unix_server, stream_protocol_factory)
from proxyprotocol.policy import HeaderConfig, Policy
from proxyprotocol.result import ProxyResultIPv4, ProxyResultIPv6
from proxyprotocol.tlv import ProxyProtocolTLV

pytestmark = pytest.mark.timeout(90)

Seen = list[tuple[ConnectionInfo, Any, Any, bytes]]


def echo_handler(seen: Seen) -> Any:
    """A handler that records what it sees and echoes one line back."""
    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        line = await asyncio.wait_for(reader.readline(), WAIT)
        seen.append((info, writer.get_extra_info('peername'),
                     writer.get_extra_info('socket_peername'), line))
        writer.write(b'echo: ' + line)
        await writer.drain()
        writer.close()
    return handler


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('version', [1, 2])
def test_header_then_data_in_one_segment(kind: str, loop_kind: str,
                                         version: int) -> None:
    seen: Seen = []

    async def main() -> None:
        factory = stream_protocol_factory(echo_handler(seen))
        async with serve(kind, factory) as listener:
            reader, writer = await listener.open()
            expected_peer = writer.get_extra_info('sockname')
            writer.write(header(version) + b'hello\nmore')
            reply = await read_until_closed(reader)
            await close(writer)
            assert reply == b'echo: hello\n'
            info, peername, socket_peername, line = seen[0]
            assert line == b'hello\n'
            assert info.proxied and info.trusted
            assert info.policy is Policy.REQUIRE
            assert info.version == version
            assert peername == CLIENT_V4 == info.peername
            assert info.sockname == SERVICE_V4
            # The real peer is kept apart from the claimed client.
            if kind == 'unix':
                assert socket_peername in ('', None, b'')
            else:
                real: Any = info.socket_peername
                assert socket_peername[:2] == expected_peer[:2] == real[:2]
            assert info.socket_family == listener.family
    run(main, loop_kind)


def test_ipv6_header_and_tlvs() -> None:
    seen: Seen = []
    tlv = ProxyProtocolTLV(unique_id=b'conn-42', authority='example.com')

    async def main() -> None:
        factory = stream_protocol_factory(echo_handler(seen))
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            writer.write(header(2, (CLIENT_V6[0], 1, 0, 0),
                                ('2001:db8::1', 443, 0, 0), tlv=tlv)
                         + b'x\n')
            assert await read_until_closed(reader) == b'echo: x\n'
            await close(writer)
    run(main)
    info = seen[0][0]
    assert isinstance(info.result, ProxyResultIPv6)
    assert info.peername == ('2001:db8::7', 1, 0, 0)
    assert info.tlv.unique_id == b'conn-42'
    assert info.tlv.authority == 'example.com'


def test_byte_at_a_time_sender() -> None:
    seen: Seen = []
    payload = header(1) + b'slowly\n'

    async def main() -> None:
        factory = stream_protocol_factory(echo_handler(seen))
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            sock = writer.get_extra_info('socket')
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(payload)):
                writer.write(payload[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.002)
            assert await read_until_closed(reader) == b'echo: slowly\n'
            await close(writer)
    run(main)
    assert seen[0][0].peername == CLIENT_V4


@pytest.mark.parametrize('kind', ['ipv4', 'unix'])
def test_start_server_functions(kind: str) -> None:
    if kind == 'unix' and not hasattr(socket, 'AF_UNIX'):
        pytest.skip('no UNIX sockets')
    seen: Seen = []

    async def main() -> None:
        with unix_path() as path:
            if kind == 'unix':
                server = await start_unix_server(echo_handler(seen), path)
                listener = Listener('unix', path)
            else:
                server = await start_server(echo_handler(seen),
                                            '127.0.0.1', 0)
                listener = Listener(
                    'ipv4', server.sockets[0].getsockname()[:2])
            async with server:
                reader, writer = await listener.open()
                writer.write(header(2) + b'hi\n')
                assert await read_until_closed(reader) == b'echo: hi\n'
                await close(writer)
    run(main)
    assert seen[0][0].peername == CLIENT_V4


def test_handler_exception_is_reported_and_connection_closed() -> None:
    errors: list[dict[str, Any]] = []

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        raise RuntimeError('handler bug')

    async def main() -> None:
        async with serve('ipv4', stream_protocol_factory(handler)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1))
            assert await read_until_closed(reader) == b''
            await close(writer)
    run(main, errors=errors)
    assert any(isinstance(e.get('exception'), RuntimeError) for e in errors)


def test_dropped_connections_never_reach_the_handler() -> None:
    called: list[ConnectionInfo] = []
    dropped: list[tuple[Any, BaseException]] = []

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        called.append(info)
        writer.close()

    async def main() -> None:
        factory = stream_protocol_factory(
            handler, on_drop=lambda peer, exc: dropped.append((peer, exc)))
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            writer.write(b'GET / HTTP/1.0\r\n\r\n')
            assert await read_until_closed(reader) == b''
            await close(writer)
    run(main)
    assert not called
    assert len(dropped) == 1
    peer, exc = dropped[0]
    assert peer[0] == '127.0.0.1'
    assert isinstance(exc, ProxyProtocolSyntaxError)


# read_proxy_header() on a stream from plain asyncio.start_server

async def with_plain_server(config: HeaderConfig, client_bytes: bytes,
                            half_close: bool = False,
                            rest: int = 0) -> tuple[Any, bytes]:
    """Send ``client_bytes`` to a plain start_server whose handler calls
    read_proxy_header(); returns its outcome and the next ``rest`` bytes
    it could read from the stream."""
    done: asyncio.Future[tuple[Any, bytes]] = \
        asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        outcome: Any
        try:
            outcome = await read_proxy_header(reader, writer, config)
        except ProxyProtocolError as exc:
            outcome = exc
        data = await asyncio.wait_for(reader.readexactly(rest), WAIT) \
            if rest and isinstance(outcome, ConnectionInfo) else b''
        done.set_result((outcome, data))
        writer.close()

    server = await asyncio.start_server(handler, '127.0.0.1', 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(client_bytes)
        if half_close:
            writer.write_eof()
        result = await asyncio.wait_for(done, WAIT)
        await close(writer)
    return result


@pytest.mark.parametrize('version', [1, 2])
def test_read_proxy_header_leaves_the_data_in_the_reader(
        version: int) -> None:
    data = b'\x16\x03\x01 application bytes \r\n\x00 and more'
    info, rest = run(lambda: with_plain_server(
        HeaderConfig(), header(version) + data, rest=len(data)))
    assert isinstance(info, ConnectionInfo)
    assert isinstance(info.result, ProxyResultIPv4)
    assert info.peername == CLIENT_V4
    assert rest == data


def test_read_proxy_header_errors() -> None:
    eof, _ = run(lambda: with_plain_server(
        HeaderConfig(timeout=30), b'PROXY TCP4 1.2', half_close=True))
    assert isinstance(eof, ProxyProtocolEOFError)
    assert isinstance(eof, asyncio.IncompleteReadError)
    assert eof.partial == b'PROXY TCP4 1.2'

    slow, _ = run(lambda: with_plain_server(
        HeaderConfig(timeout=0.3), b'PROXY TCP4 '))
    assert isinstance(slow, ProxyProtocolTimeoutError)
    assert isinstance(slow, TimeoutError)

    garbage, _ = run(lambda: with_plain_server(
        HeaderConfig(), b'SSH-2.0-OpenSSH_9.6\r\n'))
    assert isinstance(garbage, ProxyProtocolSyntaxError)

    refused, _ = run(lambda: with_plain_server(
        HeaderConfig(trusted=['10.0.0.0/8']), header(1)))
    assert isinstance(refused, ProxyProtocolRejectedError)
    assert refused.peername[0] == '127.0.0.1'


def test_read_proxy_header_optional_without_header() -> None:
    config = HeaderConfig(trusted_policy=Policy.OPTIONAL)
    info, rest = run(lambda: with_plain_server(
        config, b'PRI * HTTP/2.0\r\n', rest=4))
    assert isinstance(info, ConnectionInfo)
    assert info.header is None and not info.proxied
    assert info.peername == info.socket_peername
    # What was read to decide is handed back; the rest is in the reader.
    assert info.initial_data + rest == b'PRI * HTTP'


def test_read_proxy_header_ignore_reads_nothing() -> None:
    config = HeaderConfig(trusted_policy='ignore')
    hdr = header(1)
    info, rest = run(lambda: with_plain_server(config, hdr, rest=len(hdr)))
    assert isinstance(info, ConnectionInfo)
    assert info.policy is Policy.IGNORE and info.header is None
    # The header is never believed: it is just application data.
    assert rest == hdr
    assert info.peername == info.socket_peername


def test_read_proxy_header_optional_with_header() -> None:
    config = HeaderConfig(trusted_policy=Policy.OPTIONAL)
    info, rest = run(lambda: with_plain_server(
        config, header(2) + b'data', rest=4))
    assert isinstance(info, ConnectionInfo)
    assert info.peername == CLIENT_V4 and info.initial_data == b''
    assert rest == b'data'
