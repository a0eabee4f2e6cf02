"""build_socket_result / build_transport_result on real connections."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
import threading
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Iterator, Optional

import pytest

from proxyprotocol import build_header, parse_header
from proxyprotocol.build import build_socket_result, build_transport_result
from proxyprotocol.header import ParsedHeader
from proxyprotocol.result import (ProxyResultIPv4, ProxyResultIPv6,
                                  ProxyResultUnix, ProxyResultUnknown)

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


def connected_pair(family: int,
                   path: str = '') -> tuple[socket.socket, socket.socket]:
    """(server side, client side) of a real loopback connection."""
    if family == getattr(socket, 'AF_UNIX', None):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        address: Any = path
    else:
        host = '127.0.0.1' if family == socket.AF_INET else '::1'
        listener = socket.create_server((host, 0), family=family)
        address = listener.getsockname()
    with listener:
        listener.settimeout(WAIT)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(WAIT)
        client.connect(address)
        server, _ = listener.accept()
    return server, client


@pytest.fixture
def tmp_sock_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix='pp-build-') as tmp:
        yield os.path.join(tmp, 's.sock')


def roundtrip(result: Any) -> ParsedHeader:
    parsed = parse_header(build_header(result, version=2))
    assert isinstance(parsed, ParsedHeader)
    return parsed


def test_ipv4_socket() -> None:
    server, client = connected_pair(socket.AF_INET)
    with server, client:
        result = build_socket_result(server, unique_id=b'uid', dnsbl='bl')
        assert isinstance(result, ProxyResultIPv4)
        assert result.source == (IPv4Address('127.0.0.1'),
                                 client.getsockname()[1])
        assert result.dest == (IPv4Address('127.0.0.1'),
                               server.getsockname()[1])
        assert result.protocol == socket.SOCK_STREAM
        assert result.tlv.unique_id == b'uid'
        assert result.tlv.ext.dnsbl == 'bl'
        assert not result.tlv.ssl
        assert roundtrip(result).result == result


def test_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip('no IPv6')
    try:
        server, client = connected_pair(socket.AF_INET6)
    except OSError:
        pytest.skip('no IPv6 loopback')
    with server, client:
        result = build_socket_result(server)
        assert isinstance(result, ProxyResultIPv6)
        assert result.source[0] == IPv6Address('::1')
        assert result.source[1] == client.getsockname()[1]
        assert roundtrip(result).result == result


def test_unix_socket(tmp_sock_path: str) -> None:
    if not hasattr(socket, 'AF_UNIX'):
        pytest.skip('no UNIX sockets')
    server, client = connected_pair(socket.AF_UNIX, tmp_sock_path)
    with server, client:
        result = build_socket_result(server, unique_id=b'u')
        assert isinstance(result, ProxyResultUnix)
        assert result.dest == tmp_sock_path
        assert result.source == ''  # an unnamed client socket
        assert result.tlv.unique_id == b'u'


def test_other_families_are_unknown() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(('127.0.0.1', 0))
        udp.connect(udp.getsockname())

        class Unspec:
            family = socket.AF_UNSPEC
            type = socket.SOCK_STREAM
        result = build_transport_result(_Transport(socket=Unspec()))
        assert isinstance(result, ProxyResultUnknown)
        dgram = build_socket_result(udp)
        assert dgram.protocol == socket.SOCK_DGRAM


class _Transport:
    def __init__(self, **extra: Any) -> None:
        self.extra = extra

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def tls_pair(verify_client: bool, send_cert: bool
             ) -> tuple[ssl.SSLSocket, socket.socket, Any]:
    """A completed TLS connection: (server side, client side)."""
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert('localhost').configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    if verify_client:
        server_ctx.verify_mode = ssl.CERT_OPTIONAL
        ca.configure_trust(server_ctx)
    if send_cert:
        ca.issue_cert('client.example').configure_cert(client_ctx)
    raw_server, raw_client = connected_pair(socket.AF_INET)
    box: dict[str, Any] = {}

    def client_side() -> None:
        box['client'] = client_ctx.wrap_socket(
            raw_client, server_hostname='localhost')

    thread = threading.Thread(target=client_side)
    thread.start()
    server = server_ctx.wrap_socket(raw_server, server_side=True)
    thread.join(WAIT)
    return server, box['client'], ca


@pytest.mark.parametrize('verify_client, send_cert, verified', [
    (False, False, False),
    (False, True, False),   # a certificate, never checked: not verified
    (True, False, False),
    (True, True, True),
])
def test_ssl_verified_reflects_verification(
        verify_client: bool, send_cert: bool, verified: bool) -> None:
    server, client, _ = tls_pair(verify_client, send_cert)
    with server, client:
        result = build_socket_result(server)
        ssl_tlv = result.tlv.ssl
        assert ssl_tlv.has_ssl
        assert ssl_tlv.verified is verified
        assert ssl_tlv.has_cert_conn is (verify_client and send_cert)
        cipher = server.cipher()
        assert cipher is not None
        assert ssl_tlv.cipher == cipher[0]
        assert ssl_tlv.version == cipher[1]
        assert result.tlv.ext.secret_bits == cipher[2]
        peercert: Optional[dict[str, Any]] = result.tlv.ext.peercert
        assert bool(peercert) is verified
        # It survives the trip through a real header.
        assert roundtrip(result).result.tlv.ssl.verified is verified


def test_transport_result() -> None:
    async def main() -> Any:
        results: list[Any] = []

        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
            results.append(build_transport_result(writer, unique_id=b'x'))
            writer.close()

        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            local = writer.get_extra_info('sockname')
            await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
        return results[0], local
    result, local = asyncio.run(main())
    assert isinstance(result, ProxyResultIPv4)
    assert result.source == (IPv4Address(local[0]), local[1])
    assert result.tlv.unique_id == b'x' and not result.tlv.ssl
