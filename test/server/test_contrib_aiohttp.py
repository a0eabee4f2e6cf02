"""``aiohttp.web`` behind real HAProxy (``send-proxy-v2``), with the sites
of :mod:`proxyprotocol.contrib.aiohttp`.

aiohttp runs in the test's own event loop; the blocking test client runs in
a thread (bounded by :data:`~contrib_support.WAIT`), so it can assert on its
exact socket.

"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from support.certs import make_certificate
from support.haproxy import HAProxyV2, needs_haproxy
from support.net import LOOPBACKS, connect
from contrib_support import WAIT, HTTPConnection, client_address
from proxyprotocol import build_header
from proxyprotocol.policy import HeaderConfig
from proxyprotocol.sockaddr import result_from_sockaddrs

web = pytest.importorskip('aiohttp.web')
contrib = pytest.importorskip('proxyprotocol.contrib.aiohttp')

pytestmark = [pytest.mark.timeout(120)]

HEADER = build_header(result_from_sockaddrs(('203.0.113.7', 4321),
                                            ('198.51.100.1', 443)))


async def describe(request: Any) -> Any:
    """The handler: what aiohttp tells the application about the client."""
    info = contrib.proxy_info(request)
    peername = request.transport.get_extra_info('peername')
    return web.json_response({
        'remote': request.remote,
        'peername': list(peername[:2]),
        'secure': request.secure,
        'scheme': request.scheme,
        'socket_peername': info.socket_peername
        if isinstance(info.socket_peername, str)
        else list(info.socket_peername[:2]),
        'unique_id': info.tlv.unique_id.decode(),
        'version': info.version,
    })


def make_app() -> Any:
    app = web.Application()
    app.router.add_get('/', describe)
    return app


def run(make_site: Callable[[Any], Any], client: Callable[[Any], None]
        ) -> None:
    """Serve the application on the site ``make_site(runner)`` and run the
    blocking ``client(site)`` in a thread."""
    async def main() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        try:
            site = make_site(runner)
            await site.start()
            await asyncio.wait_for(asyncio.to_thread(client, site), WAIT * 2)
        finally:
            await asyncio.wait_for(runner.cleanup(), WAIT)
    asyncio.run(main())


@needs_haproxy
@pytest.mark.parametrize('front', LOOPBACKS)
def test_remote_is_the_original_client(tmp_path: Path, front: str) -> None:
    def client(site: Any) -> None:
        haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{site.port}', front=front,
                            server_options='proxy-v2-options unique-id',
                            frontend_lines=['unique-id-format %ci:%cp'])
        try:
            with connect(haproxy.address) as sock:
                address = client_address(sock)
                http = HTTPConnection(sock)
                for _ in range(3):
                    seen = http.request('/').json()
                    assert seen['remote'] == address[0], haproxy.log()
                    assert seen['peername'] == list(address)
                    assert seen['secure'] is False
                    assert seen['version'] == 2
                    assert seen['socket_peername'][0] == '127.0.0.1'
                    assert seen['socket_peername'][1] != address[1]
                    assert seen['unique_id'] == f'{address[0]}:{address[1]}'
        finally:
            haproxy.stop()
    run(lambda runner: contrib.ProxyTCPSite(runner, '127.0.0.1', 0), client)


@needs_haproxy
def test_tls_after_the_header(tmp_path: Path) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)

    def client(site: Any) -> None:
        assert site.name.startswith('https://127.0.0.1:')
        haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{site.port}',
                            server_options='ssl verify none')
        try:
            with connect(haproxy.address) as sock:
                address = client_address(sock)
                http = HTTPConnection(sock)
                for _ in range(2):
                    seen = http.request('/').json()
                    assert seen['peername'] == list(address), haproxy.log()
                    assert seen['secure'] is True
                    assert seen['scheme'] == 'https'
        finally:
            haproxy.stop()
    run(lambda runner: contrib.ProxyTCPSite(
        runner, '127.0.0.1', 0, ssl_context=context), client)


@needs_haproxy
def test_unix_site_behind_haproxy(tmp_path: Path) -> None:
    path = str(tmp_path / 'app.sock')

    def client(site: Any) -> None:
        haproxy = HAProxyV2(tmp_path, path)
        try:
            with connect(haproxy.address) as sock:
                address = client_address(sock)
                seen = HTTPConnection(sock).request('/').json()
                assert seen['peername'] == list(address), haproxy.log()
        finally:
            haproxy.stop()
    run(lambda runner: contrib.ProxyUnixSite(runner, path), client)


@needs_haproxy
def test_sock_site_behind_haproxy(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]

    def client(site: Any) -> None:
        assert site.name == f'http://127.0.0.1:{port} (PROXY protocol)'
        haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{port}')
        try:
            with connect(haproxy.address) as client_sock:
                address = client_address(client_sock)
                seen = HTTPConnection(client_sock).request('/').json()
                assert seen['peername'] == list(address), haproxy.log()
        finally:
            haproxy.stop()
    try:
        run(lambda runner: contrib.ProxySockSite(runner, sock), client)
    finally:
        sock.close()


def test_untrusted_peer_is_refused() -> None:
    dropped: list[tuple[Any, BaseException]] = []
    # Only 192.0.2.1 may send headers: the test (127.0.0.1) may not.
    config = HeaderConfig(trusted=['192.0.2.1'])

    def client(site: Any) -> None:
        for first in (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', HEADER):
            with connect(('127.0.0.1', site.port)) as sock:
                assert HTTPConnection(sock).refused(first)
    run(lambda runner: contrib.ProxyTCPSite(
        runner, '127.0.0.1', 0, config=config,
        on_drop=lambda peer, exc: dropped.append((peer, exc))), client)
    assert len(dropped) == 2
    assert all(peer[0] == '127.0.0.1' for peer, _ in dropped)


def test_trusted_peer_needs_a_header() -> None:
    def client(site: Any) -> None:
        with connect(('127.0.0.1', site.port)) as sock:
            assert HTTPConnection(sock).refused(
                b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        with connect(('127.0.0.1', site.port)) as sock:
            http = HTTPConnection(sock)
            http.send_raw(HEADER)
            seen = http.request('/').json()
            assert seen['remote'] == '203.0.113.7'
            assert seen['peername'] == ['203.0.113.7', 4321]
            assert seen['socket_peername'] == list(client_address(sock))
    run(lambda runner: contrib.ProxyTCPSite(runner, '127.0.0.1', 0), client)


def test_proxy_info_without_transport() -> None:
    class Request:
        transport: Optional[Any] = None
    assert contrib.proxy_info(Request()) is None
