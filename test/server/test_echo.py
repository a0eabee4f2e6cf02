"""``proxyprotocol-echo``: headers read under the policy, the original
connection logged once, every byte echoed, bad headers closed while good
clients are served, clean shutdown on SIGINT and SIGTERM.

The echo service runs in process (:class:`EchoServer`) for most tests and as
a real process (``python -m proxyprotocol.server.echo``) for the command
line, the log and the signals.

"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from proxyprotocol import build_header, result_from_sockaddrs
from proxyprotocol.result import ProxyResultLocal, ProxyResultUnix
from proxyprotocol.server import echo
from proxyprotocol.server.address import Address
from proxyprotocol.server.echo import (EchoServer, describe_connection,
                                       describe_tlvs, header_config)
from proxyprotocol.tlv import ProxyProtocolSSLTLV, ProxyProtocolTLV
from proxyprotocol.v1 import ProxyProtocolV1

from support.certs import make_cert_files
from support.loops import LOOPS, run
from support.net import (HAS_IPV6, closed_by_peer, connect, needs_ipv6,
                         recv_all, recv_exactly)
from peers import WAIT, aconnect, echo_process, ended

pytestmark = pytest.mark.timeout(120)

CLIENT = ('203.0.113.7', 4321)
SERVICE = ('198.51.100.1', 443)
CLIENT6 = ('2001:db8::7', 4321, 0, 0)
SERVICE6 = ('2001:db8::1', 443, 0, 0)


def _args(*argv: str) -> argparse.Namespace:
    return echo.make_parser().parse_args(list(argv))


def _header(version: int = 2, source: Any = CLIENT, dest: Any = SERVICE,
            *, crc32c: bool = False, **tlvs: Any) -> bytes:
    return build_header(result_from_sockaddrs(
        source, dest, protocol=socket.SOCK_STREAM,
        tlv=ProxyProtocolTLV(**tlvs)), version=version, crc32c=crc32c)


async def _start(where: str, *argv: str) -> tuple[EchoServer, Any]:
    server = EchoServer()
    address = Address(where, server=True)
    version = None
    for word in argv:
        if word in ('noop', 'detect', 'v1', 'v2'):
            version = word
    args = _args(*[a for a in argv if a not in ('noop', 'detect', 'v1',
                                                'v2')])
    await server.listen(address, header_config(args, version, address))
    sock = server.servers[-1].sockets[0]
    return server, sock.getsockname()


# -- in process -------------------------------------------------------------------

@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('version', [1, 2])
def test_echoes_every_byte_and_logs_the_client(
        loop_kind: str, version: int,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')
    payload = bytes(range(256)) * 4096 + b'no newline at the end'

    async def main() -> None:
        server, address = await _start('127.0.0.1:0')
        reader, writer = await aconnect(address)
        writer.write(_header(version) + payload[:10])
        await writer.drain()
        # Bytes come back as they arrive, not only whole lines.
        assert await asyncio.wait_for(reader.readexactly(10), WAIT) == \
            payload[:10]
        writer.write(payload[10:])
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == payload[10:]
        writer.close()
        await server.close()
    run(main, loop_kind)
    lines = [r.getMessage() for r in caplog.records
             if 'connection from' in r.getMessage()]
    assert len(lines) == 1
    assert f'connection from 203.0.113.7:4321 to 198.51.100.1:443 ' \
        f'(PROXY v{version} TCP4 via 127.0.0.1:' in lines[0]


def test_many_clients_at_once() -> None:
    async def main() -> None:
        server, address = await _start('127.0.0.1:0')

        async def client(number: int) -> bytes:
            reader, writer = await aconnect(address)
            data = f'client {number}\n'.encode() * 100
            writer.write(_header(1, ('192.0.2.1', 1000 + number)) + data)
            writer.write_eof()
            got = await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
            return got
        results = await asyncio.gather(*(client(n) for n in range(100)))
        assert results == [f'client {n}\n'.encode() * 100
                           for n in range(100)]
        assert server.count == 100
        await server.close()
    run(main)


@needs_ipv6
def test_ipv6_and_unix_listeners(tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')

    async def main() -> None:
        server6, address6 = await _start('[::1]:0')
        server_unix, path = await _start(f'unix:{tmp_path}/echo.sock')
        for address, header in (
                (address6, _header(2, CLIENT6, SERVICE6)),
                (path, build_header(ProxyResultUnix(
                    '/run/c.sock', '/run/s.sock',
                    protocol=socket.SOCK_STREAM)))):
            reader, writer = await aconnect(address)
            writer.write(header + b'ping')
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), WAIT) == b'ping'
            writer.close()
        await server6.close()
        await server_unix.close()
        assert not os.path.exists(f'{tmp_path}/echo.sock')
    run(main)
    text = caplog.text
    assert 'connection from [2001:db8::7]:4321 to [2001:db8::1]:443 ' \
        '(PROXY v2 TCP6 via [::1]:' in text
    assert 'connection from unix:/run/c.sock to unix:/run/s.sock ' \
        '(PROXY v2 UNIX stream via unix:' in text


def test_bad_headers_are_closed_while_good_clients_are_served(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')
    good = _header(2)

    async def main() -> None:
        server, address = await _start('127.0.0.1:0', '--header-timeout',
                                       '0.5')
        # A good client that stays connected throughout.
        g_reader, g_writer = await aconnect(address)
        g_writer.write(good + b'first')
        assert await asyncio.wait_for(g_reader.readexactly(5), WAIT) == \
            b'first'
        bad = [
            b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',           # garbage
            good[:20],                                      # truncated
            b'PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n',      # invalid port
            b'PROXY TCP4 1.2.3.4\r\n',                       # too few fields
            b'\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04abcd',   # short address
            _header(2, crc32c=True)[:-1] + b'\x00',          # bad CRC32C
        ]
        for data in bad:
            reader, writer = await aconnect(address)
            writer.write(data)
            if data is not bad[1]:
                writer.write_eof()
            assert await ended(reader) == b''
            writer.close()
        # The silent client is dropped by the timeout.
        s_reader, s_writer = await aconnect(address)
        assert await ended(s_reader) == b''
        s_writer.close()
        g_writer.write(b'second')
        g_writer.write_eof()
        assert await asyncio.wait_for(g_reader.read(), WAIT) == b'second'
        g_writer.close()
        assert server.count == 1
        await server.close()
    run(main)
    drops = [r for r in caplog.records if 'dropped a connection' in
             r.getMessage()]
    assert len(drops) == 7


def test_local_header_noop_and_untrusted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')

    async def main() -> None:
        # A LOCAL header (a health check): the real peer is the client.
        server, address = await _start('127.0.0.1:0', 'v2')
        reader, writer = await aconnect(address)
        writer.write(build_header(ProxyResultLocal()) + b'hc')
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b'hc'
        writer.close()
        await server.close()
        # noop: no header read at all.
        server, address = await _start('127.0.0.1:0', 'noop')
        reader, writer = await aconnect(address)
        writer.write(b'PROXY is just data here')
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == \
            b'PROXY is just data here'
        writer.close()
        await server.close()
        # 127.0.0.1 is not trusted: rejected, or served as itself.
        server, address = await _start('127.0.0.1:0', '--trusted',
                                       '10.0.0.0/8')
        reader, writer = await aconnect(address)
        writer.write(_header(1))
        assert await ended(reader) == b''
        writer.close()
        await server.close()
        server, address = await _start('127.0.0.1:0', '--trusted',
                                       '10.0.0.0/8', '--untrusted', 'ignore')
        reader, writer = await aconnect(address)
        writer.write(b'raw')
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b'raw'
        writer.close()
        await server.close()
    run(main)
    text = caplog.text
    assert '(PROXY v2 LOCAL via 127.0.0.1:' in text
    assert ': the proxy itself' in text
    assert '(no header)' in text
    assert 'refused by the PROXY protocol policy' in text


def test_optional_header(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')

    async def main() -> None:
        server, address = await _start('127.0.0.1:0', '--optional')
        for data in (b'plain', _header(1) + b'proxied'):
            reader, writer = await aconnect(address)
            writer.write(data)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
        await server.close()
    run(main)
    assert '(no header)' in caplog.text
    assert 'connection from 203.0.113.7:4321' in caplog.text


def test_tls_after_the_header(tmp_path: Path,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')
    certs = make_cert_files(tmp_path)

    async def main() -> None:
        server, address = await _start(
            f'ssl://127.0.0.1:0?cert={certs.server_pem}'
            f'&key={certs.server_key}')
        sock = socket.create_connection(address[:2])
        sock.sendall(_header(2))
        ctx = certs.client_context()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            sock=sock, ssl=ctx, server_hostname='localhost'), WAIT)
        writer.write(b'encrypted echo')
        assert await asyncio.wait_for(reader.readexactly(14), WAIT) == \
            b'encrypted echo'
        writer.close()
        await server.close()
    run(main)
    assert 'connection from 203.0.113.7:4321' in caplog.text


def test_describe_tlvs() -> None:
    tlv = ProxyProtocolTLV(
        alpn=b'h2', authority='example.com', unique_id=b'\x01\x02',
        netns='ns1', aws_vpce_id='vpce-1', azure_link_id=7,
        gcp_psc_connection_id=9,
        ssl=ProxyProtocolSSLTLV(has_ssl=True, has_cert_conn=True,
                                verified=True, version='TLSv1.3', cn='c',
                                cipher='X'), crc32c=0x01020304)
    text = describe_tlvs(tlv)
    for part in ('alpn=h2', 'authority=example.com', 'unique_id=0102',
                 'netns=ns1', 'aws_vpce_id=vpce-1', 'azure_link_id=7',
                 'gcp_psc_connection_id=9', 'crc32c=0x01020304',
                 'ssl(version=TLSv1.3, cipher=X, cn=c, client_cert, '
                 'verified)'):
        assert part in text
    other = ProxyProtocolTLV.from_entries([(0xF0, b'\xab')])
    assert describe_tlvs(other) == '0xf0=ab'


def test_legacy_run_conn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.echo')

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
            await echo.run_conn(ProxyProtocolV1(), reader, writer)
        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        reader, writer = await aconnect(address)
        writer.write(_header(1) + b'0.4 style')
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b'0.4 style'
        writer.close()
        server.close()
        with pytest.raises(TypeError):
            await echo.run_conn(1)
        with pytest.raises(TypeError):
            await echo.run()
    run(main)
    assert 'connection received: ' in caplog.text


def test_describe_connection_without_header() -> None:
    from proxyprotocol.acceptor import ConnectionInfo
    from proxyprotocol.policy import Policy
    info = ConnectionInfo(('127.0.0.1', 5), ('127.0.0.1', 6),
                          socket.AF_INET, True, Policy.IGNORE, None, b'')
    assert describe_connection(info) == \
        'connection from 127.0.0.1:5 to 127.0.0.1:6 (no header)'


# -- as a process ------------------------------------------------------------------

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_process_logs_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    server = echo_process(tmp_path, '127.0.0.1:0', '-v')
    try:
        with connect(server.address()) as sock:
            sock.sendall(_header(2, unique_id=b'\xaa' * 16) + b'x' * 70000)
            assert recv_exactly(sock, 70000) == b'x' * 70000
        lines = server.wait_log('connection from 203.0.113.7:4321')
        assert '[aaaaaaaaaaaaaaaa]' in lines[0]
        assert 'unique_id=' + 'aa' * 16 in lines[0]
        # An open connection does not hold the shutdown back.
        idle = connect(server.address())
        idle.sendall(_header(1))
        server.wait_log('connection from', count=2)
        assert server.stop(sig) == 0
        assert closed_by_peer(idle)
        idle.close()
        assert 'shutting down' in server.log()
        assert 'stopped after 2 connection(s)' in server.log()
    finally:
        server.stop()


def test_process_2020_syntax(tmp_path: Path) -> None:
    server = echo_process(tmp_path, 'v1', '--host', '127.0.0.1', '--port',
                          '0')
    try:
        with connect(server.address()) as sock:
            # v1 only: a v2 header is refused.
            sock.sendall(_header(2))
            assert closed_by_peer(sock)
        with connect(server.address()) as sock:
            sock.sendall(_header(1) + b'ok')
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b'ok'
    finally:
        assert server.stop() == 0


def test_process_unix_and_ipv6(tmp_path: Path) -> None:
    path = tmp_path / 'e.sock'
    args = [f'unix:{path}']
    if HAS_IPV6:
        args.append('[::1]:0?pp=v2')
    server = echo_process(tmp_path, *args)
    try:
        with connect(str(path)) as sock:
            sock.sendall(_header(1) + b'unix')
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b'unix'
        if HAS_IPV6:
            with connect(server.address(1)) as sock:
                sock.sendall(_header(2, CLIENT6, SERVICE6) + b'six')
                sock.shutdown(socket.SHUT_WR)
                assert recv_all(sock) == b'six'
    finally:
        assert server.stop() == 0
    assert not path.exists()


def test_process_bind_failure(tmp_path: Path) -> None:
    with socket.create_server(('127.0.0.1', 0)) as busy:
        port = busy.getsockname()[1]
        server = echo_process(tmp_path, f'127.0.0.1:{port}',
                              expect_ready=False)
        assert server.popen.wait(WAIT) == 1
    assert 'cannot start' in server.log()


def test_tls_context_check(tmp_path: Path) -> None:
    certs = make_cert_files(tmp_path)
    address = Address(f'ssl://:1?cert={certs.server_pem}&key='
                      f'{certs.server_key}', server=True)
    address.check()
    assert isinstance(address.ssl, ssl.SSLContext)
