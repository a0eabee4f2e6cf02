"""Twisted behind real HAProxy (``send-proxy-v2``), with
:class:`~proxyprotocol.contrib.twisted.ProxyProtocolServerEndpoint`.

The Twisted server (contrib_twisted_server.py, a ``twisted.web`` site) runs
as a subprocess, since a reactor cannot be restarted, and is stopped by
PID. The key property: ``transport.getPeer()`` is already the original
client in the application's ``connectionMade``.

"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from support.certs import make_certificate
from support.haproxy import HAProxyV2, needs_haproxy
from support.net import LOOPBACKS, connect, host_port, needs_ipv6
from support.procs import Proc
from contrib_support import HERE, HTTPConnection, client_address, python
from proxyprotocol import build_header
from proxyprotocol.sockaddr import result_from_sockaddrs

pytest.importorskip('twisted.web')
contrib = pytest.importorskip('proxyprotocol.contrib.twisted')

pytestmark = [pytest.mark.timeout(120)]

HEADER = build_header(result_from_sockaddrs(('203.0.113.7', 4321),
                                            ('198.51.100.1', 443)))
PLAIN = b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'


class TwistedServer:
    def __init__(self, *args: str) -> None:
        self.proc = Proc(python(str(HERE / 'contrib_twisted_server.py'),
                                *args))
        self.port = int(self.proc.wait_for(r'"port": (\d+)').group(1))


@pytest.fixture
def start_twisted() -> Iterator[Callable[..., TwistedServer]]:
    started: list[TwistedServer] = []

    def start(*args: str) -> TwistedServer:
        server = TwistedServer(*args)
        started.append(server)
        return server
    yield start
    for server in started:
        server.proc.stop()


def tcp(host: str, port: int) -> list[Any]:
    return ['TCP', host, port]


@needs_haproxy
@pytest.mark.parametrize('front', LOOPBACKS)
def test_get_peer_in_connection_made(
        front: str, start_twisted: Callable[..., TwistedServer],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    server = start_twisted()
    haproxy = start_haproxy(f'127.0.0.1:{server.port}', front=front,
                            server_options='proxy-v2-options unique-id',
                            frontend_lines=['unique-id-format %ci:%cp'])
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        http = HTTPConnection(sock)
        for _ in range(3):
            seen = http.request('/').json()
            assert seen['connection_made']['peer'] == tcp(*client), \
                haproxy.log()
            assert seen['connection_made']['host'] == tcp(front,
                                                          haproxy.port)
            assert seen['built_for'] == tcp(*client)
            assert seen['client'] == tcp(*client)
            assert seen['secure'] is False
            assert seen['socket_peername'][0] == '127.0.0.1'
            assert seen['socket_peername'][1] != client[1]
            assert seen['unique_id'] == f'{client[0]}:{client[1]}'


@needs_haproxy
def test_tls_after_the_header(tmp_path: Path,
                              start_twisted: Callable[..., TwistedServer],
                              start_haproxy: Callable[..., HAProxyV2]) -> None:
    pytest.importorskip('OpenSSL')
    certfile, keyfile = make_certificate(tmp_path)
    pem = tmp_path / 'both.pem'
    pem.write_text(Path(certfile).read_text() + Path(keyfile).read_text())
    server = start_twisted('--tls-pem', str(pem))
    haproxy = start_haproxy(f'127.0.0.1:{server.port}',
                            server_options='ssl verify none')
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        http = HTTPConnection(sock)
        for _ in range(2):
            seen = http.request('/').json()
            assert seen['connection_made']['peer'] == tcp(*client), \
                haproxy.log()
            assert seen['secure'] is True


@needs_haproxy
def test_unix_endpoint_behind_haproxy(
        tmp_path: Path, start_twisted: Callable[..., TwistedServer],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    path = str(tmp_path / 'twisted.sock')
    start_twisted('--unix', path)
    haproxy = start_haproxy(path)
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        seen = HTTPConnection(sock).request('/').json()
        assert seen['connection_made']['peer'] == tcp(*client), haproxy.log()


def test_untrusted_peer_is_refused(
        start_twisted: Callable[..., TwistedServer]) -> None:
    server = start_twisted('--trusted', '192.0.2.1')
    for first in (PLAIN, HEADER):
        with connect(('127.0.0.1', server.port)) as sock:
            source = client_address(sock)
            assert HTTPConnection(sock).refused(first)
        dropped = json.loads(server.proc.wait_for(r'"dropped"').string)
        assert dropped == {'dropped': list(source),
                           'error': 'ProxyProtocolRejectedError'}


def test_trusted_peer_needs_a_header(
        start_twisted: Callable[..., TwistedServer]) -> None:
    server = start_twisted()
    with connect(('127.0.0.1', server.port)) as sock:
        assert HTTPConnection(sock).refused(PLAIN)
    server.proc.wait_for(r'"dropped".*ProxyProtocol\w*Error')
    with connect(('127.0.0.1', server.port)) as sock:
        http = HTTPConnection(sock)
        http.send_raw(HEADER)
        seen = http.request('/').json()
        assert seen['connection_made']['peer'] == tcp('203.0.113.7', 4321)
        assert seen['connection_made']['host'] == tcp('198.51.100.1', 443)
        assert seen['socket_peername'] == list(client_address(sock))


@needs_ipv6
def test_ipv6_listener(start_twisted: Callable[..., TwistedServer]) -> None:
    server = start_twisted('--host', '::1')
    with connect(('::1', server.port)) as sock:
        http = HTTPConnection(sock)
        http.send_raw(build_header(result_from_sockaddrs(
            ('2001:db8::7', 4321), ('2001:db8::1', 443))))
        seen = http.request('/').json()
        assert seen['connection_made']['peer'] == tcp('2001:db8::7', 4321)
        assert seen['connection_made']['host'] == tcp('2001:db8::1', 443)
        assert seen['socket_peername'][:2] == list(client_address(sock))


def test_untrusted_peer_ignored_is_served_as_itself(
        start_twisted: Callable[..., TwistedServer]) -> None:
    server = start_twisted('--trusted', '192.0.2.1',
                           '--untrusted-policy', 'ignore')
    with connect(('127.0.0.1', server.port)) as sock:
        seen = HTTPConnection(sock).request('/').json()
        assert seen['connection_made']['peer'] == tcp(*client_address(sock))


def test_header_timeout(start_twisted: Callable[..., TwistedServer]) -> None:
    server = start_twisted('--timeout', '0.3')
    with connect(('127.0.0.1', server.port)) as sock:
        assert HTTPConnection(sock).closed_without_response()
    server.proc.wait_for(r'"dropped".*ProxyProtocolTimeoutError')


def test_eof_before_the_header_is_reported(
        start_twisted: Callable[..., TwistedServer]) -> None:
    server = start_twisted()
    with connect(('127.0.0.1', server.port)) as sock:
        sock.sendall(HEADER[:10])
    server.proc.wait_for(r'"dropped".*ProxyProtocolEOFError')


def test_proxy_info_of_other_transports() -> None:
    class Transport:
        transport = None
    assert contrib.proxy_info(Transport()) is None
    assert contrib.proxy_info(None) is None
    assert host_port('::1', 1) == '[::1]:1'
