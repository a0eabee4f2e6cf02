"""The reference servers against a real nginx (Debian's 1.22) and curl.

* ``proxyprotocol-server`` in front of an nginx ``listen ... proxy_protocol``
  HTTP server that answers with ``$proxy_protocol_addr:$proxy_protocol_port``:
  the address nginx reports is the real client's; v1 and v2, over
  127.0.0.1, ::1 and a UNIX socket.
* nginx ``stream`` with ``proxy_protocol on`` (v1) in front of
  ``proxyprotocol-echo``, over TCP and a UNIX socket: the echo server logs
  the real client.
* ``curl --haproxy-protocol`` straight to the echo server.

nginx runs in the foreground with a generated configuration in a temporary
directory, on listening sockets it inherits, and is stopped by its PID.

"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from support.net import (LOOPBACKS, connect, host_port, listening_socket,
                         recv_all, recv_exactly)
from support.nginx import Nginx, needs_nginx, needs_stream
from support.procs import ServerProcess, wait_connectable
from peers import WAIT, echo_process, proxy_process

pytestmark = [pytest.mark.timeout(180)]

needs_curl = pytest.mark.skipif(shutil.which('curl') is None,
                                reason='curl is not installed')


def _http(tmp_path: Path, listen: str) -> str:
    return f"""
http {{
    {Nginx.temp_paths(tmp_path)}
    server {{
        listen {listen} proxy_protocol;
        location / {{
            return 200 "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port";
        }}
    }}
}}
"""  # noqa: E501


def _get(address: object) -> tuple[str, tuple[str, int]]:
    with connect(address) as sock:   # type: ignore[arg-type]
        client = sock.getsockname()
        sock.sendall(b'GET / HTTP/1.0\r\nHost: test\r\n\r\n')
        response = recv_all(sock)
    head, _, body = response.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 200'), response
    return body.decode(), client


@needs_nginx
@pytest.mark.parametrize('host', LOOPBACKS)
@pytest.mark.parametrize('version', [1, 2])
def test_our_proxy_to_nginx(tmp_path: Path, host: str, version: int) -> None:
    back, back_port = listening_socket()
    nginx = Nginx(tmp_path, _http(tmp_path, f'127.0.0.1:{back_port}'),
                  (back,))
    proxy = proxy_process(tmp_path, '--service', host_port(host, 0),
                          f'127.0.0.1:{back_port}?pp=v{version}')
    try:
        wait_connectable(('127.0.0.1', back_port), nginx)
        body, client = _get(proxy.address())
        assert body == f'{client[0]}:{client[1]} {host}:{proxy.port}', \
            nginx.log()
    finally:
        assert proxy.stop() == 0
        nginx.stop()


@needs_nginx
@pytest.mark.parametrize('version', [1, 2])
def test_our_proxy_to_nginx_over_unix(tmp_path: Path, version: int) -> None:
    path = tmp_path / 'nginx.sock'
    nginx = Nginx(tmp_path, _http(tmp_path, f'unix:{path}'))
    proxy = proxy_process(tmp_path, '--service', '127.0.0.1:0',
                          f'unix:{path}?pp=v{version}')
    try:
        wait_connectable(str(path), nginx)
        body, client = _get(proxy.address())
        assert body.startswith(f'127.0.0.1:{client[1]} 127.0.0.1:'), \
            nginx.log()
    finally:
        assert proxy.stop() == 0
        nginx.stop()


@needs_nginx
@needs_stream
@pytest.mark.parametrize('host', LOOPBACKS)
def test_nginx_stream_proxy_protocol_to_echo(
        tmp_path: Path, echo_server: ServerProcess, host: str) -> None:
    front, front_port = listening_socket(host)
    unix_front, unix_port = listening_socket()
    body = f"""
stream {{
    server {{
        listen {host_port(host, front_port)};
        proxy_pass 127.0.0.1:{echo_server.port};
        proxy_protocol on;
    }}
    server {{
        listen 127.0.0.1:{unix_port};
        proxy_pass unix:{tmp_path}/e.sock;
        proxy_protocol on;
    }}
}}
"""
    nginx = Nginx(tmp_path, body, (front, unix_front), stream=True)
    try:
        wait_connectable((host, front_port), nginx)
        wait_connectable(('127.0.0.1', unix_port), nginx)
        for port, port_host, via in ((front_port, host, '127.0.0.1:'),
                                     (unix_port, '127.0.0.1', 'unix:')):
            with connect((port_host, port)) as sock:
                client = sock.getsockname()
                payload = b'\x00\xffbinary, no newline'
                sock.sendall(payload)
                assert recv_exactly(sock, len(payload)) == payload, \
                    nginx.log()
            fam = 'TCP6' if ':' in port_host else 'TCP4'
            echo_server.wait_log(re.escape(
                f'connection from {host_port(port_host, client[1])} to '
                f'{host_port(port_host, port)} (PROXY v1 {fam} via {via}'))
    finally:
        nginx.stop()


@needs_curl
@pytest.mark.parametrize('host', LOOPBACKS)
def test_curl_haproxy_protocol_to_echo(tmp_path: Path,
                                       echo_server: ServerProcess,
                                       host: str) -> None:
    port = echo_server.port
    if ':' in host:
        echo6 = echo_process(tmp_path, '[::1]:0')
        port = echo6.port
    url = f'http://{host_port(host, port)}/hello'
    # The echo server answers with the request itself (HTTP/0.9 to curl)
    # and keeps the connection open: curl stops at --max-time.
    done = subprocess.run(
        ['curl', '--haproxy-protocol', '--http0.9', '-s', '--max-time', '2',
         url], capture_output=True, timeout=WAIT)
    assert done.stdout.startswith(b'GET /hello HTTP/1.1\r\n'), done
    server = echo6 if ':' in host else echo_server
    try:
        family = 'TCP6' if ':' in host else 'TCP4'
        line, = server.wait_log('connection from')
        shown = f'[{host}]' if ':' in host else host
        assert re.search(
            rf'connection from {re.escape(shown)}:\d+ to '
            rf'{re.escape(host_port(host, port))} \(PROXY v1 {family} via ',
            line), line
    finally:
        if ':' in host:
            assert echo6.stop() == 0


def test_client_socket_helper() -> None:
    with socket.create_server(('127.0.0.1', 0)) as sock:
        wait_connectable(sock.getsockname())
