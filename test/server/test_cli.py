"""The command lines of ``proxyprotocol-server`` and ``proxyprotocol-echo``:
both syntaxes (2020's and 0.11's addresses), ``--help``, ``--version``, clear
errors with exit status 2 (bad arguments) or 1 (cannot start), signals,
worker processes, and the endpoint syntax itself (:class:`Address`).

"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from proxyprotocol import (ParsedHeader, build_header, parse_datagram,
                           parse_header, result_from_sockaddrs)
from proxyprotocol.__about__ import __version__
from proxyprotocol.server import echo
from proxyprotocol.server import main as server_main
from proxyprotocol.server.address import Address
from proxyprotocol.version import ProxyProtocolVersion

from support.certs import make_cert_files
from support.net import HAS_IPV6, closed_by_peer, connect, recv_all
from peers import WAIT, echo_process, proxy_process

pytestmark = pytest.mark.timeout(120)

SERVER = [sys.executable, '-m', 'proxyprotocol.server.main']
ECHO = [sys.executable, '-m', 'proxyprotocol.server.echo']


def _run(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True,
                          timeout=WAIT, stdin=subprocess.DEVNULL)


# -- help, version, errors ------------------------------------------------------

def test_help_explains_every_option() -> None:
    out = _run(SERVER, '--help')
    assert out.returncode == 0
    for option in ('--service', '--workers', '--max-connections',
                   '--connect-timeout', '--idle-timeout', '--header-timeout',
                   '--udp-idle-timeout', '--udp-max-flows',
                   '--drain-timeout', '--trusted', '--buf-len', '--no-splice',
                   '--backlog', '--loop', '--quiet', '--verbose', '--version',
                   'pp=v1|v2|detect', 'tlv=NAME', 'unix:PATH', 'ssl://',
                   'udp://', 'SIGTERM', 'exit status'):
        assert option in out.stdout, option
    out = _run(ECHO, '--help')
    assert out.returncode == 0
    for option in ('--host', '--port', '--trusted', '--untrusted',
                   '--optional', '--header-timeout', '--loop', '--quiet',
                   '--verbose', 'localhost:10007', 'SIGTERM'):
        assert option in out.stdout, option


def test_version() -> None:
    for command in (SERVER, ECHO):
        out = _run(command, '--version')
        assert out.returncode == 0
        assert __version__ in out.stdout


@pytest.mark.parametrize('args, message', [
    ([], 'At least one --service is required.'),
    (['--service', 'localhost:1'], 'expected 2 arguments'),
    (['--service', ':1', 'localhost'], 'the port is missing'),
    (['--service', ':1', ':2'], 'the host is missing'),
    (['--service', ':1', 'h:99999'], 'the port must be a number'),
    (['--service', ':1', 'h:2?pp=v3'], "pp='v3' is not one of"),
    (['--service', ':1', 'h:2?bogus=1'], 'unknown option(s) bogus'),
    (['--service', ':1', 'h:2?tlv=foo'], 'unknown TLV(s) foo'),
    (['--service', ':1', 'h:2?cafile=x'], 'only apply to ssl://'),
    (['--service', 'ssl://:1', 'h:2'], 'a TLS listener needs cert=FILE'),
    (['--service', ':1', 'ftp://h:2'], "unknown scheme 'ftp'"),
    (['--service', 'udp://:1', 'h:2'], 'needs udp:// on both sides'),
    (['--service', ':1', 'h:2', '--workers', '0'], "'0' is less than 1"),
    (['--service', ':1', 'h:2', '--idle-timeout', 'x'], 'not a number'),
    (['--service', 'udp://:1', 'udp://h:2', '--udp-idle-timeout', '0'],
     '--udp-idle-timeout must be more than 0'),
    (['--service', 'udp://:1', 'udp://h:2', '--udp-idle-timeout', '1e10'],
     '--udp-idle-timeout must be more than 0'),
    (['--service', 'udp://:1', 'udp://h:2', '--udp-max-flows', '0'],
     "'0' is less than 1"),
    (['--service', ':1', 'h:2', '--buf-len', '10'], 'at least 1024'),
    (['--service', ':1', 'h:2', '--trusted', 'nonsense'], '--trusted'),
    (['--service', ':1?mode=abc', 'h:2'], 'mode= only applies to UNIX'),
    (['v3', '--service', ':1', 'h:2'], 'invalid choice'),
    (['--service', ':1', 'h:2', '--dnsbl', 'x', '--dnsbl-timeout', '0'],
     '--dnsbl-timeout must be more than 0'),
])
def test_server_bad_arguments(args: list[str], message: str) -> None:
    out = _run(SERVER, *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert 'usage: proxyprotocol-server' in out.stderr


@pytest.mark.parametrize('args, message', [
    (['v1', 'v2'], 'two header versions given'),
    (['--port', '70000'], 'is not in 0-65535'),
    (['h:1?pp=v9'], "pp='v9'"),
    (['udp://127.0.0.1:0', 'v1'], 'UDP datagrams carry only v2'),
    (['--trusted', 'not-a-net'], '--trusted'),
])
def test_echo_bad_arguments(args: list[str], message: str) -> None:
    out = _run(ECHO, *args)
    assert out.returncode == 2
    assert message in out.stderr


def test_server_cannot_start(tmp_path: Path) -> None:
    with socket.create_server(('127.0.0.1', 0)) as busy:
        port = busy.getsockname()[1]
        server = proxy_process(tmp_path, '--service', f'127.0.0.1:{port}',
                               f'127.0.0.1:{port}', expect_ready=False)
        assert server.popen.wait(WAIT) == 1
    assert 'cannot start' in server.log()
    unknown = proxy_process(tmp_path, '--service', '127.0.0.1:0',
                            'no-such-host.invalid:80', expect_ready=False)
    assert unknown.popen.wait(WAIT) == 1
    assert 'cannot start' in unknown.log()


def test_echo_defaults_to_localhost() -> None:
    version, addresses = echo._check(echo.make_parser(),
                                     echo.make_parser().parse_args([]))
    assert version is None
    assert [str(a) for a in addresses] == ['//localhost:10007']
    version, addresses = echo._check(echo.make_parser(),
                                     echo.make_parser().parse_args(
                                         ['V2', '--port', '1234']))
    assert version == 'v2'
    assert addresses[0].host == 'localhost' and addresses[0].port == 1234
    args = echo.make_parser().parse_args(['--host', '::1'])
    assert echo._check(echo.make_parser(), args)[1][0].host == '::1'


# -- running servers -------------------------------------------------------------

def _backend() -> tuple[socket.socket, int]:
    sock = socket.create_server(('127.0.0.1', 0))
    sock.settimeout(WAIT)
    return sock, sock.getsockname()[1]


def _header_from(backend: socket.socket) -> tuple[Any, socket.socket, bytes]:
    """The next connection's header, the connection, and the bytes that
    came after the header."""
    conn, _ = backend.accept()
    conn.settimeout(WAIT)
    data = b''
    while True:
        chunk = conn.recv(4096)
        assert chunk, data
        data += chunk
        parsed = parse_header(data)
        if isinstance(parsed, ParsedHeader):
            return parsed, conn, data[parsed.length:]


@pytest.mark.parametrize('legacy, version', [
    ([], 2), (['v1'], 1), (['V2'], 2), (['detect'], 1), (['noop'], None)])
def test_server_2020_syntax(tmp_path: Path, legacy: list[str],
                            version: Any) -> None:
    backend, port = _backend()
    server = proxy_process(tmp_path, *legacy, '--service', '127.0.0.1:0',
                           f'127.0.0.1:{port}')
    try:
        with connect(server.address()) as client:
            client.sendall(b'data')
            if version is None:
                conn, _ = backend.accept()
                assert conn.recv(4) == b'data'
            else:
                parsed, conn, _ = _header_from(backend)
                assert parsed.version == version
                assert parsed.result.peername[1] == client.getsockname()[1]
            conn.close()
    finally:
        assert server.stop() == 0
        backend.close()


def test_server_several_services_and_signals(tmp_path: Path) -> None:
    backend1, port1 = _backend()
    backend2, port2 = _backend()
    server = proxy_process(
        tmp_path, '--service', '127.0.0.1:0', f'127.0.0.1:{port1}?pp=v1',
        '--service', '127.0.0.1:0', f'127.0.0.1:{port2}?pp=v2&tlv=none',
        '--drain-timeout', '0.5')
    try:
        assert len(server.addresses) == 2
        with connect(server.address(0)):
            assert _header_from(backend1)[0].version == 1
        open_client = connect(server.address(1))
        parsed, conn, _ = _header_from(backend2)
        assert parsed.version == 2 and not parsed.result.tlv
        # SIGINT: drain; the open connection is reset after 0.5 s; exit 0.
        assert server.stop(signal.SIGINT) == 0
        assert closed_by_peer(open_client)
        open_client.close()
        conn.close()
        log = server.log()
        assert 'SIGINT: shutting down' in log
        assert 'draining 1 connection(s)' in log
        assert 'stopped after 2 connection(s)' in log
    finally:
        server.stop()
        backend1.close()
        backend2.close()


def test_server_second_signal_is_immediate(tmp_path: Path) -> None:
    backend, port = _backend()
    server = proxy_process(tmp_path, '--service', '127.0.0.1:0',
                           f'127.0.0.1:{port}')
    try:
        client = connect(server.address())
        _, conn, _ = _header_from(backend)
        server.popen.send_signal(signal.SIGTERM)
        server.wait_log('draining 1 connection')
        assert server.stop(signal.SIGTERM) == 0
        assert 'closing at once' in server.log()
        assert closed_by_peer(client)
        client.close()
        conn.close()
    finally:
        server.stop()
        backend.close()


def test_server_workers(tmp_path: Path) -> None:
    backend, port = _backend()
    server = proxy_process(tmp_path, '--workers', '2', '--service',
                           '127.0.0.1:0', f'127.0.0.1:{port}?pp=v1',
                           ready=2)
    try:
        assert '2 workers started' in server.log()
        for _ in range(10):
            with connect(server.address()) as client:
                client.sendall(b'hi')
                parsed, conn, rest = _header_from(backend)
                assert parsed.version == 1
                assert rest + conn.recv(2 - len(rest)) == b'hi'
                conn.close()
                assert closed_by_peer(client)
    finally:
        assert server.stop() == 0
        backend.close()


def test_server_workers_unix(tmp_path: Path) -> None:
    backend, port = _backend()
    path = tmp_path / 'p.sock'
    server = proxy_process(tmp_path, '--workers', '2', '--service',
                           f'unix:{path}', f'127.0.0.1:{port}', ready=2)
    try:
        with connect(str(path)) as client:
            client.sendall(b'u')
            parsed, conn, _ = _header_from(backend)
            assert parsed.result.type.name == 'UNIX'
            conn.close()
    finally:
        assert server.stop() == 0
        backend.close()
    assert not path.exists()


def test_echo_behind_our_proxy_over_tls(tmp_path: Path) -> None:
    """The README demo, with TLS on both hops: client -TLS-> proxy -header,
    TLS-> echo."""
    certs = make_cert_files(tmp_path)
    echo_server = echo_process(
        tmp_path, f'ssl://127.0.0.1:0?cert={certs.server_pem}'
        f'&key={certs.server_key}')
    proxy = proxy_process(
        tmp_path, '--service',
        f'ssl://127.0.0.1:0?cert={certs.server_pem}&key={certs.server_key}',
        f'ssl://localhost:{echo_server.port}?cafile={certs.ca_pem}')
    try:
        ctx = certs.client_context()
        with connect(proxy.address()) as raw:
            with ctx.wrap_socket(raw, server_hostname='localhost') as tls:
                tls.sendall(b'through two TLS hops')
                data = b''
                while len(data) < 20:
                    data += tls.recv(100)
                assert data == b'through two TLS hops'
                client_port = tls.getsockname()[1]
        line = echo_server.wait_log('connection from')[0]
        assert f'connection from 127.0.0.1:{client_port} ' in line
        assert 'ssl(version=TLSv1.' in line and 'authority=localhost' in line
    finally:
        assert proxy.stop() == 0
        assert echo_server.stop() == 0


@pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 loopback')
def test_server_ipv6_listen_and_destination(tmp_path: Path) -> None:
    backend = socket.create_server(('::1', 0), family=socket.AF_INET6)
    backend.settimeout(WAIT)
    port = backend.getsockname()[1]
    server = proxy_process(tmp_path, '--service', '[::1]:0',
                           f'[::1]:{port}?pp=v1')
    try:
        with connect(server.address()) as client:
            parsed, conn, _ = _header_from(backend)
            assert parsed.result.peername[:2] == client.getsockname()[:2]
            conn.close()
    finally:
        assert server.stop() == 0
        backend.close()


# -- the 0.4 / 0.11 helpers ---------------------------------------------------------

def test_module_helpers() -> None:
    assert server_main.address('localhost:10007') == ('localhost', 10007)
    assert server_main.address('[::1]:80') == ('::1', 80)
    with pytest.raises(ValueError):
        server_main.address('localhost')
    assert server_main._address_text(('::1', 80)) == '[::1]:80'
    assert server_main._address_text(('h', 80)) == 'h:80'


# -- Address ---------------------------------------------------------------------

@pytest.mark.parametrize('text, host, port, path, scheme', [
    ('localhost:10007', 'localhost', 10007, None, ''),
    ('LocalHost:1?pp=v1', 'localhost', 1, None, ''),
    (':10007', '', 10007, None, ''),
    ('[::1]:8080', '::1', 8080, None, ''),
    ('tcp://127.0.0.1:9', '127.0.0.1', 9, None, ''),
    ('ssl://example.com:443?sni=www.example.com', 'example.com', 443, None,
     'ssl'),
    ('tls://example.com:443', 'example.com', 443, None, 'ssl'),
    ('unix:/run/a.sock', '', None, '/run/a.sock', 'unix'),
    ('unix:@abstract?pp=v2', '', None, '\x00abstract', 'unix'),
    ('/run/b.sock', '', None, '/run/b.sock', 'unix'),
    ('./c.sock', '', None, './c.sock', 'unix'),
    ('udp://127.0.0.1:53', '127.0.0.1', 53, None, 'udp'),
    ('host:0', 'host', None, None, ''),
])
def test_address_forms(text: str, host: str, port: Any, path: Any,
                       scheme: str) -> None:
    address = Address(text, server=scheme != 'ssl')
    address.check()
    assert (address.host, address.port, address.path, address.scheme) == \
        (host, port, path, scheme)


def test_address_compat() -> None:
    address = Address('localhost:10000?pp=v1&pp=v2')
    assert address.pp is ProxyProtocolVersion.V2.value
    assert Address('localhost:1').pp is ProxyProtocolVersion.DETECT.value
    assert str(Address('localhost:10000')) == '//localhost:10000'
    assert str(Address('ssl://h:443')) == 'ssl://h:443'
    assert Address('h:1').ssl is None
    assert Address('h:1?sni=x').sni == 'x' and Address('h:1').sni == 'h'
    assert Address('h:1?alpn=h2,http/1.1').alpn == ['h2', 'http/1.1']
    assert repr(Address('h:1')) == "Address('h:1', server=False)"
    with pytest.raises(KeyError):
        Address('h:1?pp=nope').pp


def test_address_tls_contexts(tmp_path: Path) -> None:
    certs = make_cert_files(tmp_path)
    server = Address(f'ssl://:1?cert={certs.server_pem}&key='
                     f'{certs.server_key}&verify=CERT_REQUIRED&cafile='
                     f'{certs.ca_pem}&alpn=h2', server=True)
    ctx = server.ssl
    assert ctx is not None and ctx is server.ssl
    assert ctx.verify_mode.name == 'CERT_REQUIRED'
    client = Address(f'ssl://h:1?verify=none&cert={certs.client_pem}'
                     f'&key={certs.client_key}')
    ctx = client.ssl
    assert ctx is not None and not ctx.check_hostname
    bad = Address('ssl://h:1?cafile=/nonexistent/ca.pem')
    with pytest.raises(ValueError, match='cannot load the TLS files'):
        bad.check()
    with pytest.raises(ValueError, match='verify='):
        Address('ssl://h:1?verify=sometimes').check()
    with pytest.raises(ValueError, match='policy='):
        Address(':1?policy=maybe', server=True).check()
    with pytest.raises(ValueError, match='mode='):
        Address('unix:/x?mode=9z', server=True).check()
    with pytest.raises(ValueError, match='path is missing'):
        Address('unix:', server=True).check()
    with pytest.raises(ValueError, match='unexpected'):
        Address('h:1/path').check()
    with pytest.raises(ValueError, match='UDP carries only v2'):
        Address('udp://h:1?pp=v1').check()


def test_main_returns_status_in_process(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    with pytest.raises(SystemExit) as exc:
        server_main.main(['--service'])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        echo.main(['--version'])
    assert exc.value.code == 0
    assert isinstance(server_main.make_parser(), argparse.ArgumentParser)
    # A backend that does not resolve: status 1 from main() itself.
    status = server_main.main(['-q', '--service', '127.0.0.1:0',
                               'no-such-host.invalid:1'])
    assert status == 1


def test_echo_process_2020_and_0_11_together(tmp_path: Path) -> None:
    # A version word and an address with its own ?pp=.
    server = echo_process(tmp_path, 'v1', '127.0.0.1:0', '127.0.0.1:0?pp=v2')
    try:
        with connect(server.address(0)) as sock:
            sock.sendall(b'PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nv1')
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b'v1'
        with connect(server.address(1)) as sock:
            sock.sendall(b'PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n')
            assert closed_by_peer(sock)
    finally:
        assert server.stop() == 0


def test_udp_services(tmp_path: Path) -> None:
    """``udp://`` on both command lines: datagrams behind a v2 header."""
    backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend.bind(('127.0.0.1', 0))
    backend.settimeout(WAIT)
    proxy = proxy_process(tmp_path, '--service', 'udp://127.0.0.1:0',
                          f'udp://127.0.0.1:{backend.getsockname()[1]}')
    echo_server = echo_process(tmp_path, 'udp://127.0.0.1:0')
    try:
        line, = proxy.wait_log(r'UDP service on 127\.0\.0\.1:\d+')
        port = int(re.search(r'UDP service on 127\.0\.0\.1:(\d+)',
                             line).group(1))   # type: ignore[union-attr]
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(WAIT)
        client.sendto(b'datagram', ('127.0.0.1', port))
        data, _ = backend.recvfrom(65536)
        parsed, payload = parse_datagram(data)
        assert bytes(payload) == b'datagram'
        assert parsed.result.source == (IPv4Address('127.0.0.1'),
                                        client.getsockname()[1])
        line, = echo_server.wait_log(r'UDP echo service on 127\.0\.0\.1:\d+')
        echo_port = int(re.search(r'on 127\.0\.0\.1:(\d+)',
                                  line).group(1))   # type: ignore[union-attr]
        header = build_header(result_from_sockaddrs(
            ('192.0.2.9', 53), ('192.0.2.1', 53), protocol=socket.SOCK_DGRAM))
        client.sendto(header + b'echo me', ('127.0.0.1', echo_port))
        reply, _ = client.recvfrom(65536)
        assert reply.endswith(b'echo me')
        client.close()
    finally:
        assert proxy.stop() == 0
        assert echo_server.stop() == 0
        backend.close()


def _udp_port(server: Any) -> int:
    """The port of a UDP service, from the log of its server."""
    line, = server.wait_log(r'UDP service on 127\.0\.0\.1:\d+ ->')
    found = re.search(r'UDP service on 127\.0\.0\.1:(\d+)', line)
    assert found is not None
    return int(found.group(1))


def test_udp_idle_timeout_and_max_flows(tmp_path: Path) -> None:
    """``--udp-max-flows 1``: a second client is dropped while the first
    one's flow is open; ``--udp-idle-timeout``: that flow closes once idle,
    and the second client gets through. The counters are logged at exit."""
    backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend.bind(('127.0.0.1', 0))
    backend.settimeout(WAIT)
    backend_port = backend.getsockname()[1]
    proxy = proxy_process(
        tmp_path, '--service', 'udp://127.0.0.1:0',
        f'udp://127.0.0.1:{backend_port}?tlv=crc32c,unique-id',
        '--udp-idle-timeout', '0.3', '--udp-max-flows', '1')
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        first.bind(('127.0.0.1', 0))
        second.bind(('127.0.0.1', 0))
        port = _udp_port(proxy)
        log = proxy.log()
        assert 'closed after 0.3 s idle, at most 1 at once' in log
        assert 'unique-id do not apply to UDP' in log
        first.sendto(b'first', ('127.0.0.1', port))
        data, _ = backend.recvfrom(65536)
        parsed, first_payload = parse_datagram(data)
        assert bytes(first_payload) == b'first'
        assert parsed.result.peername == first.getsockname()
        assert parsed.result.tlv.crc32c is not None
        assert not parsed.result.tlv.unique_id
        # The table is full: the second client's datagram is dropped.
        second.sendto(b'second', ('127.0.0.1', port))
        proxy.wait_log(r'UDP flow table full \(1 flows\)')
        # Once the first flow has been idle for 0.3 s it is closed, and the
        # second client has a flow of its own (with the default 60 s, not
        # within the bounded wait).
        backend.settimeout(0.1)
        deadline = time.monotonic() + WAIT
        payload = b''
        while payload != b'second' and time.monotonic() < deadline:
            second.sendto(b'second', ('127.0.0.1', port))
            try:
                data, _ = backend.recvfrom(65536)
            except socket.timeout:
                continue
            parsed, view = parse_datagram(data)
            payload = bytes(view)
        assert payload == b'second'
        assert parsed.result.peername == second.getsockname()
    finally:
        assert proxy.stop() == 0
        first.close()
        second.close()
        backend.close()
    line, = proxy.wait_log(rf'UDP service on 127\.0\.0\.1:{port} -> '
                           rf'udp://127\.0\.0\.1:{backend_port} stopped:')
    counts = dict((key, int(value)) for key, value in
                  re.findall(r'(\w+)=(\d+)', line.partition('stopped:')[2]))
    assert counts['flows_opened'] == 2
    assert counts['flows_expired'] >= 1
    assert counts['dropped_no_flow'] >= 1
    assert counts['forwarded'] >= 2
    assert counts['received'] == counts['forwarded'] + \
        counts['dropped_no_flow']


def test_udp_flows_default_settings(tmp_path: Path) -> None:
    """Without the UDP options, flows last 60 s and 4096 may be open: the
    TCP ``--idle-timeout`` does not apply to them."""
    backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend.bind(('127.0.0.1', 0))
    proxy = proxy_process(tmp_path, '--service', 'udp://127.0.0.1:0',
                          f'udp://127.0.0.1:{backend.getsockname()[1]}',
                          '--idle-timeout', '0')
    try:
        _udp_port(proxy)
        assert 'closed after 60 s idle, at most 4096 at once, CRC32C in ' \
            'each header' in proxy.log()
    finally:
        assert proxy.stop() == 0
        backend.close()
    proxy.wait_log(r'stopped: received=0 ')


def test_run_helpers_take_0_4_and_0_11_arguments() -> None:
    """``run(pp, args)`` (0.4: address tuples) and ``run(args)`` (0.11:
    text); both return 1 when the server cannot start."""
    import asyncio
    from proxyprotocol.v1 import ProxyProtocolV1
    args = argparse.Namespace(services=[[('127.0.0.1', 0),
                                         ('no-such-host.invalid', 1)]],
                              buf_len=262144, quiet=True, type='detect')
    assert asyncio.run(server_main.run(ProxyProtocolV1(), args)) == 1
    assert args.type == 'v1'
    args = argparse.Namespace(services=[['127.0.0.1:0',
                                         'no-such-host.invalid:1']],
                              buf_len=262144, quiet=True, dnsbl=None)
    assert asyncio.run(server_main.run(args)) == 1


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    backend, port = _backend()
    server = proxy_process(tmp_path, '--workers', '2', '--service',
                           '127.0.0.1:0', f'127.0.0.1:{port}', ready=2)
    pids = [int(p) for p in re.findall(r'worker \d+ ready \(pid (\d+)',
                                       server.log())]
    assert len(pids) == 2
    server.popen.kill()
    server.popen.wait(WAIT)
    # The kernel tells the workers (PR_SET_PDEATHSIG); they stop cleanly.
    deadline = time.monotonic() + WAIT
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive
                 if Path(f'/proc/{pid}').exists()
                 and 'Z' not in Path(f'/proc/{pid}/stat').read_text()
                 .rpartition(')')[2].split()[:1]]
        time.sleep(0.05)
    backend.close()
    assert not alive
