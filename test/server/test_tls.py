"""TLS after the PROXY header, over real loopback sockets.

The header and the TLS ClientHello are sent in one ``write`` (one
segment), which is where naive ``start_tls`` loses the ClientHello
(CPython issue 142352).

"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
from typing import Any, Optional

import pytest

from support.certs import make_certs
from support.loops import LOOPS, run
from adapter_support import (CLIENT_V4, KINDS, WAIT, MemoryTLSClient,
                             client_hello, close, header, read_until_closed,
                             serve)
from proxyprotocol.acceptor import ConnectionInfo
from proxyprotocol.aio import stream_protocol_factory, wrap_protocol_factory
from proxyprotocol.blocking import read_header
from proxyprotocol.build import build_transport_result
from proxyprotocol.policy import HeaderConfig

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('kind', KINDS)
def test_streams_header_and_client_hello_in_one_segment(
        kind: str, loop_kind: str) -> None:
    certs = make_certs()
    seen: list[tuple[ConnectionInfo, Any, Any]] = []

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        line = await asyncio.wait_for(reader.readline(), WAIT)
        seen.append((info, writer.get_extra_info('ssl_object'),
                     writer.get_extra_info('cipher')))
        writer.write(b'secure ' + line)
        await writer.drain()
        writer.close()

    async def main() -> None:
        factory = stream_protocol_factory(handler, ssl=certs.server)
        async with serve(kind, factory) as listener:
            reader, writer = await listener.open()
            client = MemoryTLSClient(certs.client, reader, writer)
            await client.handshake(prefix=header(1), after=b'hello\n')
            reply = await client.receive_until(b'\n')
            await close(writer)
            assert reply == b'secure hello\n'
    run(main, loop_kind)
    info, ssl_object, cipher = seen[0]
    assert info.peername == CLIENT_V4
    assert isinstance(ssl_object, ssl.SSLObject)
    assert cipher is not None


@pytest.mark.parametrize('loop_kind', LOOPS)
def test_protocol_tls_with_client_certificate(loop_kind: str) -> None:
    certs = make_certs(client_cert=True)
    seen: dict[str, Any] = {}

    class App(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buffer = bytearray(5)
            self.data = bytearray()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            seen['peercert'] = transport.get_extra_info('peercert')
            seen['result'] = build_transport_result(transport)
            seen['can_write_eof'] = transport.can_write_eof()
            seen['compression'] = transport.get_extra_info('compression')
            seen['context'] = transport.get_extra_info('sslcontext')

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buffer

        def buffer_updated(self, nbytes: int) -> None:
            self.data += self.buffer[:nbytes]
            if self.data.endswith(b'\n'):
                self.transport.write(b'got ' + bytes(self.data))
                self.transport.close()

    async def main() -> None:
        factory = wrap_protocol_factory(App, ssl=certs.server)
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            client = MemoryTLSClient(certs.client, reader, writer)
            await client.handshake(prefix=header(2),
                                   after=b'a line longer than the buffer\n')
            reply = await client.receive_until(b'\n')
            assert reply == b'got a line longer than the buffer\n'
            # The server closed with a close_notify.
            assert await client.receive_until(b'never') == reply
            await close(writer)
    run(main, loop_kind)
    assert seen['peercert']['subject']
    assert seen['context'] is certs.server
    assert seen['can_write_eof'] is False
    assert seen['compression'] is None
    result = seen['result']
    assert result.tlv.ssl.has_ssl and result.tlv.ssl.verified
    assert result.tlv.ssl.has_cert_conn


def test_client_close_notify_reaches_the_application() -> None:
    certs = make_certs()
    events: list[str] = []

    class App(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            events.append(data.decode())

        def eof_received(self) -> Optional[bool]:
            events.append('eof')
            return None

        def connection_lost(self, exc: Optional[Exception]) -> None:
            events.append('lost')

    async def main() -> None:
        factory = wrap_protocol_factory(App, ssl=certs.server)
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            client = MemoryTLSClient(certs.client, reader, writer)
            await client.handshake(prefix=header(1), after=b'bye')
            try:
                client.obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            writer.write(client.outgoing.read())
            await read_until_closed(reader)
            await close(writer)
            for _ in range(100):
                if 'lost' in events:
                    break
                await asyncio.sleep(0.01)
    run(main)
    assert events == ['bye', 'eof', 'lost']


@pytest.mark.skipif(sys.version_info < (3, 11),
                    reason='StreamWriter.start_tls is new in 3.11')
def test_standard_client_with_start_tls() -> None:
    certs = make_certs()

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        peer: Any = info.peername
        writer.write(b'hi ' + str(peer[0]).encode() + b'\n')
        await writer.drain()
        writer.close()

    async def main() -> None:
        factory = stream_protocol_factory(handler, ssl=certs.server)
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            writer.write(header(1))
            await writer.drain()
            start_tls = getattr(writer, 'start_tls')  # Python 3.11+
            await asyncio.wait_for(start_tls(
                certs.client, server_hostname='localhost'), WAIT)
            line = await asyncio.wait_for(reader.readline(), WAIT)
            await close(writer)
            assert line == b'hi 203.0.113.7\n'
    run(main)


def test_tls_failures_drop_the_connection() -> None:
    certs = make_certs()
    dropped: list[BaseException] = []
    called: list[ConnectionInfo] = []

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        called.append(info)

    async def main() -> None:
        factory = stream_protocol_factory(
            handler, ssl=certs.server, ssl_handshake_timeout=0.3,
            on_drop=lambda peer, exc: dropped.append(exc))
        async with serve('ipv4', factory) as listener:
            # Plain text where the ClientHello should be.
            reader, writer = await listener.open()
            writer.write(header(1) + b'GET / HTTP/1.1\r\n\r\n')
            await read_until_closed(reader)
            await close(writer)
            # A header, then silence: the handshake times out.
            reader, writer = await listener.open()
            writer.write(header(1))
            assert await read_until_closed(reader) == b''
            await close(writer)
            # A header, then half of a ClientHello and end of stream.
            reader, writer = await listener.open()
            hello = client_hello(certs.client)[3]
            writer.write(header(1) + hello[:20])
            writer.write_eof()
            assert await read_until_closed(reader) == b''
            await close(writer)
    run(main)
    assert not called
    assert len(dropped) == 3
    assert isinstance(dropped[0], ssl.SSLError)
    assert isinstance(dropped[1], TimeoutError)
    assert isinstance(dropped[2], ConnectionError)


def test_blocking_socket_tls_after_header() -> None:
    certs = make_certs()
    outcome: dict[str, Any] = {}
    listener = socket.create_server(('127.0.0.1', 0))
    listener.settimeout(WAIT)

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            info = read_header(conn, HeaderConfig())
            with certs.server.wrap_socket(conn, server_side=True) as tls:
                line = tls.recv(1024)
                tls.sendall(b'tls ' + line)
                outcome['info'] = info
                outcome['cipher'] = tls.cipher()

    thread = threading.Thread(target=serve_one)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), WAIT) as sock:
            obj, incoming, outgoing, hello = client_hello(certs.client)
            sock.sendall(header(2) + hello)  # one segment
            while True:
                data = sock.recv(65536)
                assert data, 'closed during the handshake'
                incoming.write(data)
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
            obj.write(b'ping')
            sock.sendall(outgoing.read())
            reply = b''
            while not reply:
                try:
                    reply = obj.read(1024)
                except ssl.SSLWantReadError:
                    data = sock.recv(65536)
                    assert data
                    incoming.write(data)
    finally:
        thread.join(WAIT)
        listener.close()
    assert reply == b'tls ping'
    assert outcome['info'].peername == CLIENT_V4
    assert outcome['cipher'] is not None


def test_tcp_end_and_paused_reading_under_tls() -> None:
    certs = make_certs()
    events: list[str] = []

    class App(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            transport.pause_reading()
            asyncio.get_running_loop().call_later(
                0.1, transport.resume_reading)

        def data_received(self, data: bytes) -> None:
            events.append(data.decode())

        def eof_received(self) -> Optional[bool]:
            events.append('eof')
            return None

        def connection_lost(self, exc: Optional[Exception]) -> None:
            events.append('lost')

    async def main() -> None:
        factory = wrap_protocol_factory(App, ssl=certs.server)
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            client = MemoryTLSClient(certs.client, reader, writer)
            await client.handshake(prefix=header(1), after=b'held')
            # End of TCP stream without a close_notify.
            writer.write_eof()
            await read_until_closed(reader)
            await close(writer)
            for _ in range(100):
                if 'lost' in events:
                    break
                await asyncio.sleep(0.01)
    run(main)
    assert events == ['held', 'eof', 'lost']
