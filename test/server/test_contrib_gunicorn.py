"""gunicorn with ``-k proxyprotocol.contrib.gunicorn.UvicornProxyWorker``
behind real HAProxy (``send-proxy-v2``).

gunicorn runs as a real subprocess (one worker) on ephemeral loopback ports
read from its "Listening at" line, and is stopped by PID.

"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from support.certs import make_certificate
from support.haproxy import HAProxyV2, needs_haproxy
from support.net import LOOPBACKS, connect, host_port, needs_ipv6
from support.procs import Proc
from contrib_support import (HERE, HTTPConnection, client_address, python,
                             websocket_handshake, websocket_receive_text)
from proxyprotocol import build_header
from proxyprotocol.sockaddr import result_from_sockaddrs

gunicorn_config = pytest.importorskip('gunicorn.config')
pytest.importorskip('uvicorn')
contrib = pytest.importorskip('proxyprotocol.contrib.gunicorn')

pytestmark = [pytest.mark.timeout(120)]

WORKERS = [
    pytest.param('UvicornProxyWorker', id='auto'),
    pytest.param('UvicornH11ProxyWorker', id='h11'),
]

HEADER = build_header(result_from_sockaddrs(('203.0.113.7', 4321),
                                            ('198.51.100.1', 443)))


class Gunicorn:
    """A gunicorn master with one worker serving contrib_asgi_app:app."""

    def __init__(self, worker: str, binds: tuple[str, ...],
                 args: tuple[str, ...] = ()) -> None:
        command = python('-m', 'gunicorn', 'contrib_asgi_app:app',
                         '--chdir', str(HERE), '--workers', '1',
                         '--worker-class',
                         f'proxyprotocol.contrib.gunicorn.{worker}',
                         '--graceful-timeout', '2', '--log-level', 'info')
        if hasattr(gunicorn_config, 'ControlSocketDisable'):
            command.append('--no-control-socket')
        for bind in binds:
            command += ['--bind', host_port(bind, 0)]
        self.proc = Proc([*command, *args])
        line = self.proc.wait_for(r'Listening at: (\S+)').group(1)
        self.addresses = []
        for url in line.split(','):
            match = re.fullmatch(r'https?://\[?([^\]]+?)\]?:(\d+)', url)
            assert match is not None, url
            self.addresses.append((match.group(1), int(match.group(2))))
        # The worker is ready once the application has started.
        self.proc.wait_for('Application startup complete')

    @property
    def hostport(self) -> str:
        return host_port(*self.addresses[0])


@pytest.fixture
def start_gunicorn() -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(worker: str = 'UvicornProxyWorker',
              binds: tuple[str, ...] = ('127.0.0.1',),
              args: tuple[str, ...] = ()) -> Gunicorn:
        server = Gunicorn(worker, binds, args)
        started.append(server)
        return server
    yield start
    for server in started:
        server.proc.stop()


@needs_haproxy
@pytest.mark.parametrize('front', LOOPBACKS)
@pytest.mark.parametrize('worker', WORKERS)
def test_worker_sees_the_original_client(
        worker: str, front: str, start_gunicorn: Callable[..., Gunicorn],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    server = start_gunicorn(worker)
    haproxy = start_haproxy(server.hostport, front=front,
                            server_options='proxy-v2-options unique-id',
                            frontend_lines=['unique-id-format %ci:%cp'])
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        http = HTTPConnection(sock)
        for _ in range(3):
            seen = http.request('/').json()
            assert seen['client'] == list(client), haproxy.log()
            assert seen['server'] == [front, haproxy.port]
            assert seen['proxy']['socket_peername'][0] == '127.0.0.1'
            assert seen['proxy']['unique_id'] == f'{client[0]}:{client[1]}'
        rest = websocket_handshake(sock)
        text, _ = websocket_receive_text(sock, rest)
        assert json.loads(text)['client'] == list(client)


@pytest.mark.parametrize('worker', WORKERS)
def test_no_header_is_refused(worker: str,
                              start_gunicorn: Callable[..., Gunicorn]
                              ) -> None:
    server = start_gunicorn(worker)
    with connect(server.addresses[0]) as sock:
        assert HTTPConnection(sock).refused(
            b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')


def test_peer_outside_proxy_allow_from_is_refused(
        start_gunicorn: Callable[..., Gunicorn]) -> None:
    # --proxy-allow-from names the trusted proxies; the test (127.0.0.1)
    # is not one of them, so it is refused with or without a header.
    server = start_gunicorn(args=('--proxy-allow-from', '192.0.2.1'))
    for first in (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', HEADER):
        with connect(server.addresses[0]) as sock:
            assert HTTPConnection(sock).refused(first)


@needs_haproxy
@needs_ipv6
def test_proxy_allow_from_per_listener(
        start_gunicorn: Callable[..., Gunicorn],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    # gunicorn listens on 127.0.0.1 and ::1 and trusts only 127.0.0.1:
    # HAProxy (connecting from 127.0.0.1) is served, a direct client on
    # ::1 is refused even with a well-formed header.
    server = start_gunicorn(binds=('127.0.0.1', '::1'),
                            args=('--proxy-allow-from', '127.0.0.1'))
    v4 = [a for a in server.addresses if a[0] == '127.0.0.1'][0]
    v6 = [a for a in server.addresses if a[0] == '::1'][0]
    haproxy = start_haproxy(host_port(*v4))
    with connect(haproxy.address) as sock:
        seen = HTTPConnection(sock).request('/').json()
        assert seen['client'] == list(client_address(sock))
    with connect(v6) as sock:
        assert HTTPConnection(sock).refused(HEADER)


@needs_haproxy
@pytest.mark.skipif(not hasattr(gunicorn_config, 'validate_proxy_protocol'),
                    reason='--proxy-protocol takes a version from gunicorn 24.1')
def test_proxy_protocol_version_option(
        start_gunicorn: Callable[..., Gunicorn],
        start_haproxy: Callable[..., HAProxyV2]) -> None:
    # --proxy-protocol v1: HAProxy's v2 header is not accepted.
    server = start_gunicorn(args=('--proxy-protocol', 'v1'))
    haproxy = start_haproxy(server.hostport)
    with connect(haproxy.address) as sock:
        assert HTTPConnection(sock).refused(
            b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    with connect(server.addresses[0]) as sock:
        http = HTTPConnection(sock)
        http.send_raw(b'PROXY TCP4 203.0.113.7 198.51.100.1 4321 443\r\n')
        assert http.request('/').json()['client'] == ['203.0.113.7', 4321]


@needs_haproxy
@pytest.mark.parametrize('worker', WORKERS)
def test_tls_after_the_header(worker: str, tmp_path: Path,
                              start_gunicorn: Callable[..., Gunicorn],
                              start_haproxy: Callable[..., HAProxyV2]) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    server = start_gunicorn(worker, args=('--certfile', certfile,
                                          '--keyfile', keyfile))
    haproxy = start_haproxy(server.hostport,
                            server_options='ssl verify none')
    with connect(haproxy.address) as sock:
        client = client_address(sock)
        http = HTTPConnection(sock)
        for _ in range(2):
            seen = http.request('/').json()
            assert seen['client'] == list(client), haproxy.log()
            assert seen['scheme'] == 'https'


def test_environment_overrides(start_gunicorn: Callable[..., Gunicorn]
                               ) -> None:
    # PROXYPROTOCOL_* override gunicorn's options: here an untrusted peer
    # is served as itself (policy "ignore") instead of refused.
    server = start_gunicorn(args=(
        '--proxy-allow-from', '192.0.2.1',
        '--env', 'PROXYPROTOCOL_UNTRUSTED_POLICY=ignore'))
    with connect(server.addresses[0]) as sock:
        seen = HTTPConnection(sock).request('/').json()
        assert seen['client'] == list(client_address(sock))
        assert seen['proxy']['trusted'] is False
        assert seen['proxy']['version'] is None


class _Cfg:
    def __init__(self, allow: list[str], mode: Any) -> None:
        self.proxy_allow_ips = allow
        self.proxy_protocol = mode


def test_header_config_from_gunicorn_options() -> None:
    convert = contrib.header_config_from_gunicorn
    config = convert(_Cfg(['10.0.0.0/8'], 'v2'))
    assert config.is_trusted(('10.1.2.3', 1)) and config.is_trusted('/sock')
    assert not config.is_trusted(('127.0.0.1', 1))
    assert config.versions == (2,)
    assert convert(_Cfg(['*'], True)).is_trusted(('192.0.2.1', 1))
    assert convert(_Cfg([], 'off')).versions == (1, 2)
