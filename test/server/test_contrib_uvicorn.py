"""uvicorn behind real HAProxy (``send-proxy-v2``), with
``--http proxyprotocol.contrib.uvicorn:...``.

uvicorn runs as a real subprocess on an ephemeral loopback port (read from
its startup line) and is stopped by PID. HAProxy's client side is the
test's own socket, so the application must report exactly that socket's
address and port.

"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from support.certs import make_certificate
from support.haproxy import HAProxyV2, needs_haproxy
from support.net import LOOPBACKS, connect, host_port, needs_ipv6
from support.procs import Proc
from contrib_support import (HERE, WAIT, HTTPConnection, client_address,
                             python, websocket_handshake,
                             websocket_receive_text, websocket_send_text)
from proxyprotocol import build_header
from proxyprotocol.policy import HeaderConfig
from proxyprotocol.sockaddr import result_from_sockaddrs

uvicorn = pytest.importorskip('uvicorn')
contrib = pytest.importorskip('proxyprotocol.contrib.uvicorn')

pytestmark = [pytest.mark.timeout(120)]

IMPLEMENTATIONS = [
    pytest.param('H11ProxyProtocol', id='h11'),
    pytest.param('HttpToolsProxyProtocol', id='httptools',
                 marks=pytest.mark.skipif(
                     __import__('importlib').util.find_spec('httptools')
                     is None, reason='httptools is not installed')),
]

#: TLVs asked of HAProxy: a CRC32C, and a unique ID naming the client.
TLV_OPTIONS = 'proxy-v2-options crc32c,unique-id'
UNIQUE_ID = 'unique-id-format %ci:%cp'

UVICORN_STARTED = r'Uvicorn running on \w+://\S+:(\d+)'


class Uvicorn:
    """A uvicorn process serving contrib_asgi_app:app."""

    def __init__(self, protocol: str, *, host: str = '127.0.0.1',
                 env: Optional[dict[str, str]] = None,
                 args: tuple[str, ...] = ()) -> None:
        self.host = host
        self.proc = Proc(python(
            '-m', 'uvicorn', 'contrib_asgi_app:app', '--app-dir', str(HERE),
            '--host', host, '--port', '0', '--lifespan', 'on',
            '--http', f'proxyprotocol.contrib.uvicorn:{protocol}',
            '--log-level', 'info', *args), env=env)
        self.port = int(self.proc.wait_for(UVICORN_STARTED).group(1))

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def hostport(self) -> str:
        return host_port(self.host, self.port)


@pytest.fixture
def start_uvicorn() -> Iterator[Callable[..., Uvicorn]]:
    started: list[Uvicorn] = []

    def start(protocol: str = 'H11ProxyProtocol', **kwargs: Any) -> Uvicorn:
        server = Uvicorn(protocol, **kwargs)
        started.append(server)
        return server
    yield start
    for server in started:
        # uvicorn ends itself with the signal it caught; with SIGINT that
        # is a KeyboardInterrupt, so exit handlers (coverage) still run.
        server.proc.stop(signal.SIGINT)


@needs_haproxy
@pytest.mark.parametrize('loop', ['asyncio', 'auto'])
@pytest.mark.parametrize('front', LOOPBACKS)
@pytest.mark.parametrize('protocol', IMPLEMENTATIONS)
def test_scope_client_is_the_original_client(
        protocol: str, front: str, loop: str,
        start_uvicorn: Callable[..., Uvicorn],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    # 'auto' is uvloop when it is installed.
    server = start_uvicorn(protocol, args=('--loop', loop))
    haproxy = start_haproxy(server.hostport, front=front,
                            server_options=TLV_OPTIONS,
                            frontend_lines=[UNIQUE_ID])
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        http = HTTPConnection(sock)
        # Keep-alive: every request on the connection reports the client.
        for _ in range(3):
            response = http.request('/')
            assert response.status == 200, haproxy.log()
            seen = response.json()
            assert seen['client'] == list(client)
            assert seen['server'] == [front, haproxy.port]
            assert seen['scheme'] == 'http'
            proxy = seen['proxy']
            assert proxy['version'] == 2 and proxy['proxied']
            assert proxy['trusted'] is True
            # The real peer is HAProxy's own connection, not the client's.
            assert proxy['socket_peername'][0] == '127.0.0.1'
            assert proxy['socket_peername'][1] != client[1]
            # TLVs reach the application.
            assert 0x03 in proxy['tlv_types'] and 0x05 in proxy['tlv_types']
            assert proxy['unique_id'] == f'{client[0]}:{client[1]}'
    # uvicorn's access log names the client, not HAProxy.
    server.proc.wait_for(rf'{client[0]}:{client[1]} - "GET / HTTP/1.1" 200')


@needs_haproxy
@pytest.mark.parametrize('protocol', IMPLEMENTATIONS)
def test_websocket_upgrade(protocol: str,
                           start_uvicorn: Callable[..., Uvicorn],
                           start_haproxy: Callable[..., HAProxyV2]) -> None:
    server = start_uvicorn(protocol)
    haproxy = start_haproxy(server.hostport, server_options=TLV_OPTIONS,
                            frontend_lines=[UNIQUE_ID])
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        # A plain request first, then the upgrade on the same connection.
        http = HTTPConnection(sock)
        assert http.request('/').json()['client'] == list(client)
        rest = websocket_handshake(sock)
        text, rest = websocket_receive_text(sock, rest)
        seen = json.loads(text)
        assert seen['type'] == 'websocket'
        assert seen['client'] == list(client)
        assert seen['scheme'] == 'ws'
        assert seen['proxy']['unique_id'] == f'{client[0]}:{client[1]}'
        websocket_send_text(sock, 'hello')
        text, rest = websocket_receive_text(sock, rest)
        assert text == 'echo:hello'


@needs_haproxy
@pytest.mark.parametrize('protocol', IMPLEMENTATIONS)
def test_tls_after_the_header(protocol: str, tmp_path: Path,
                              start_uvicorn: Callable[..., Uvicorn],
                              start_haproxy: Callable[..., HAProxyV2]) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    server = start_uvicorn(protocol, env={
        'PROXYPROTOCOL_SSL_CERTFILE': certfile,
        'PROXYPROTOCOL_SSL_KEYFILE': keyfile})
    # HAProxy sends the header in clear, then starts TLS to uvicorn.
    haproxy = start_haproxy(server.hostport,
                            server_options='ssl verify none')
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        http = HTTPConnection(sock)
        for _ in range(2):
            seen = http.request('/').json()
            assert seen['client'] == list(client)
            assert seen['scheme'] == 'https'
        rest = websocket_handshake(sock)
        text, rest = websocket_receive_text(sock, rest)
        assert json.loads(text)['scheme'] == 'wss'
        assert json.loads(text)['client'] == list(client)


def test_uvicorn_tls_options_are_refused(
        tmp_path: Path, start_uvicorn: Callable[..., Uvicorn]) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    server = start_uvicorn(args=('--ssl-certfile', certfile,
                                 '--ssl-keyfile', keyfile))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with connect(server.address) as sock:
        # uvicorn's TLS comes first (uvloop finishes the handshake before
        # making the protocol); then the connection is dropped.
        try:
            with context.wrap_socket(sock) as tls:
                http = HTTPConnection(tls)
                assert http.refused(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        except (ssl.SSLError, ConnectionError):
            pass
    server.proc.wait_for('put TLS before the PROXY header')


@pytest.mark.parametrize('protocol', IMPLEMENTATIONS)
def test_no_header_from_a_trusted_peer_is_refused(
        protocol: str, start_uvicorn: Callable[..., Uvicorn]) -> None:
    # The test itself is trusted here (loopback, the default): a header is
    # required, and plain HTTP is not one.
    server = start_uvicorn(protocol)
    with connect(server.address) as sock:
        http = HTTPConnection(sock)
        assert http.refused(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    # A header from the same (trusted) peer is accepted.
    with connect(server.address) as sock:
        source = client_address(sock)
        header = build_header(result_from_sockaddrs(
            ('203.0.113.7', 4321), ('198.51.100.1', 443)))
        http = HTTPConnection(sock)
        http.send_raw(header)
        seen = http.request('/').json()
        assert seen['client'] == ['203.0.113.7', 4321]
        assert seen['server'] == ['198.51.100.1', 443]
        assert seen['proxy']['socket_peername'] == list(source)


@pytest.mark.parametrize('protocol', IMPLEMENTATIONS)
def test_untrusted_peer_is_refused(
        protocol: str, start_uvicorn: Callable[..., Uvicorn]) -> None:
    # Only 192.0.2.1 (a documentation address) may send headers: the test,
    # on 127.0.0.1, is an untrusted peer, refused with or without a header.
    server = start_uvicorn(protocol,
                           env={'PROXYPROTOCOL_TRUSTED': '192.0.2.1'})
    header = build_header(result_from_sockaddrs(
        ('203.0.113.7', 4321), ('198.51.100.1', 443)))
    for first in (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', header):
        with connect(server.address) as sock:
            assert HTTPConnection(sock).refused(first)


def test_header_timeout(start_uvicorn: Callable[..., Uvicorn]) -> None:
    server = start_uvicorn(env={'PROXYPROTOCOL_TIMEOUT': '0.3'})
    with connect(server.address) as sock:
        # Nothing sent: the server gives up on the header and closes.
        assert HTTPConnection(sock).closed_without_response()


def test_invalid_environment_fails_at_startup() -> None:
    proc = Proc(python(
        '-m', 'uvicorn', 'contrib_asgi_app:app', '--app-dir', str(HERE),
        '--host', '127.0.0.1', '--port', '0',
        '--http', 'proxyprotocol.contrib.uvicorn:H11ProxyProtocol'),
        env={'PROXYPROTOCOL_TRUSTED': 'not-a-network'})
    try:
        assert proc.popen.wait(WAIT) != 0
        assert 'not-a-network' in proc.text()
    finally:
        proc.stop()


# --- uvicorn's forwarded-headers middleware ---------------------------------

FORGED_XFF = '198.51.100.66'


#: A v1 header claiming the client is 127.0.0.1 (which uvicorn's
#: forwarded-headers middleware trusts), then a request whose
#: X-Forwarded-For names someone else.
FORGED_HEADER = b'PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n'
FORGED_REQUEST = (b'GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: '
                  + FORGED_XFF.encode() + b'\r\n\r\n')


@needs_ipv6
@pytest.mark.parametrize('untrusted_policy', ['reject', 'ignore'])
def test_forged_header_cannot_make_forwarded_headers_trusted(
        untrusted_policy: str,
        start_uvicorn: Callable[..., Uvicorn]) -> None:
    # uvicorn listens on ::1 and trusts only 127.0.0.1 as a PROXY sender
    # (where HAProxy would be). The attacker connects from ::1, which is
    # not in --forwarded-allow-ips either.
    server = start_uvicorn(host='::1', env={
        'PROXYPROTOCOL_TRUSTED': '127.0.0.1',
        'PROXYPROTOCOL_UNTRUSTED_POLICY': untrusted_policy,
    }, args=('--forwarded-allow-ips', '127.0.0.1'))
    with connect(server.address) as sock:
        http = HTTPConnection(sock)
        if untrusted_policy == 'reject':
            assert http.refused(FORGED_HEADER + FORGED_REQUEST)
        else:
            # The header is not read: its bytes are HTTP, and not valid.
            http.send_raw(FORGED_HEADER + FORGED_REQUEST)
            response = http.read_response()
            assert response.status == 400
            assert FORGED_XFF.encode() not in response.body
    # Plain requests from the untrusted peer (policy "ignore") are served
    # with the real peer as the client, and its X-Forwarded-For is not
    # believed.
    if untrusted_policy == 'ignore':
        with connect(server.address) as sock:
            seen = HTTPConnection(sock).request('/', headers=[
                ('X-Forwarded-For', FORGED_XFF)]).json()
            assert seen['client'] == list(client_address(sock))


@needs_ipv6
def test_forged_header_would_work_from_a_trusted_peer(
        start_uvicorn: Callable[..., Uvicorn]) -> None:
    # The control for the test above: the same bytes from a *trusted*
    # sender do make uvicorn believe X-Forwarded-For, so the protection
    # really is the allowlist.
    server = start_uvicorn(host='::1', env={'PROXYPROTOCOL_TRUSTED': '::1'},
                           args=('--forwarded-allow-ips', '127.0.0.1'))
    with connect(server.address) as sock:
        http = HTTPConnection(sock)
        http.send_raw(FORGED_HEADER + FORGED_REQUEST)
        seen = http.read_response().json()
        assert seen['client'][0] == FORGED_XFF


@needs_haproxy
@needs_ipv6
def test_forwarded_headers_are_checked_against_the_real_client(
        start_uvicorn: Callable[..., Uvicorn],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    # HAProxy connects to uvicorn from 127.0.0.1, which is in
    # --forwarded-allow-ips; the client connects to HAProxy from ::1, which
    # is not. Without the header, uvicorn would take HAProxy for the client
    # and believe any X-Forwarded-For; with it, the client is checked.
    server = start_uvicorn(args=('--forwarded-allow-ips', '127.0.0.1'))
    haproxy = start_haproxy(server.hostport, front='::1')
    with connect(haproxy.address) as sock:
        seen = HTTPConnection(sock).request('/', headers=[
            ('X-Forwarded-For', FORGED_XFF)]).json()
        assert seen['client'] == list(client_address(sock))


# --- the programmatic API -----------------------------------------------------

@needs_haproxy
def test_config_http_in_process(tmp_path: Path) -> None:
    from contrib_asgi_app import app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    dropped: list[Any] = []
    http_class = contrib.proxy_protocol_class(
        'h11', config=HeaderConfig(trusted=['127.0.0.1']),
        on_drop=lambda peer, exc: dropped.append((peer, exc)))
    config = uvicorn.Config(app, http=http_class, lifespan='off',
                            log_level='warning')
    server = uvicorn.Server(config)
    haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{port}')
    results: dict[str, Any] = {}

    def client() -> None:
        with connect(haproxy.address) as client_sock:
            results['client'] = client_address(client_sock)
            results['seen'] = HTTPConnection(client_sock).request('/').json()
        with connect(('127.0.0.1', port)) as client_sock:
            results['refused'] = \
                HTTPConnection(client_sock).closed_without_response()

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            for _ in range(int(WAIT / 0.05)):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            assert server.started
            thread = threading.Thread(target=client, daemon=True)
            thread.start()
            await asyncio.wait_for(asyncio.to_thread(thread.join, WAIT),
                                   WAIT + 1)
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, WAIT)

    try:
        asyncio.run(main())
    finally:
        haproxy.stop()
        sock.close()
    assert results['seen']['client'] == list(results['client'])
    assert results['refused'] is True
    assert dropped and dropped[0][0][0] == '127.0.0.1'


def test_proxy_protocol_class_arguments() -> None:
    with pytest.raises(TypeError):
        contrib.proxy_protocol_class('h11', ssl='yes')
    made = contrib.proxy_protocol_class('h11')
    assert issubclass(made, contrib.UvicornProxyProtocol)
    assert made.alpn_protocols == ['http/1.1']
    with pytest.raises(AttributeError):
        getattr(contrib, 'NoSuchProtocol')
