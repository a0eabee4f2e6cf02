"""The reference servers against a real HAProxy (Debian's 2.6).

* HAProxy ``send-proxy`` and ``send-proxy-v2`` in front of
  ``proxyprotocol-echo``, over 127.0.0.1, ::1 and a UNIX socket: the echo
  server logs the real client.
* HAProxy terminating TLS (``trustme`` certificates, a client certificate)
  with ``proxy-v2-options crc32c,unique-id,authority,ssl,...``: the echo
  server logs every TLV.
* ``proxyprotocol-server`` in front of an HAProxy ``accept-proxy`` HTTP
  frontend that answers with the client it was told about (``%[src]``),
  the AUTHORITY and UNIQUE_ID TLVs it read (``fc_pp_*``), v1 and v2, over
  127.0.0.1, ::1 and UNIX sockets; HAProxy checks the CRC32C.
* Garbage, truncated and invalid headers sent straight to the echo server
  are dropped while a client behind HAProxy is served.

HAProxy runs in the foreground with a generated configuration, on listening
sockets it inherits, and is stopped by its PID.

"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from support.certs import make_cert_files
from support.haproxy import HAProxy, needs_haproxy
from support.net import (LOOPBACKS, closed_by_peer, connect, host_port,
                         listening_socket, recv_all, recv_exactly)
from support.procs import ServerProcess, wait_connectable
from peers import proxy_process

pytestmark = [pytest.mark.timeout(180), needs_haproxy]

GLOBAL = """
global
    nbthread 1
defaults
    timeout connect 5s
    timeout client 20s
    timeout server 20s
"""


def _through(port_or_path: Any, payload: bytes) -> tuple[bytes, Any]:
    with connect(port_or_path) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock), sock.getsockname()


# -- HAProxy in front of proxyprotocol-echo ------------------------------------------

@pytest.mark.parametrize('host', LOOPBACKS)
@pytest.mark.parametrize('option, version', [('send-proxy', 1),
                                             ('send-proxy-v2', 2)])
def test_send_proxy_to_echo(tmp_path: Path, echo_server: ServerProcess,
                            host: str, option: str, version: int) -> None:
    front, front_port = listening_socket(host)
    config = GLOBAL + f"""
frontend fe
    mode tcp
    bind fd@{{fe}}
    default_backend be
backend be
    mode tcp
    server echo 127.0.0.1:{echo_server.port} {option}
"""
    haproxy = HAProxy(tmp_path, config, {'fe': front})
    try:
        payload = bytes(range(256)) * 64 + b'\r\n' + b'no newline'
        data, client = _through((host, front_port), payload)
        assert data == payload, haproxy.log()
        family = 'TCP6' if ':' in host else 'TCP4'
        line = echo_server.wait_log(
            re.escape(f'connection from {host_port(host, client[1])} to '
                      f'{host_port(host, front_port)} (PROXY v{version} '
                      f'{family} via 127.0.0.1:'))
        assert line
    finally:
        haproxy.stop()


def test_send_proxy_v2_to_echo_over_unix(tmp_path: Path,
                                         echo_server: ServerProcess) -> None:
    front, front_port = listening_socket()
    config = GLOBAL + f"""
frontend fe
    mode tcp
    bind fd@{{fe}}
    default_backend be
backend be
    mode tcp
    server echo unix@{tmp_path}/e.sock send-proxy-v2
frontend fe_unix
    mode tcp
    bind unix@{tmp_path}/front.sock
    default_backend be
"""
    haproxy = HAProxy(tmp_path, config, {'fe': front})
    try:
        data, client = _through(('127.0.0.1', front_port), b'over unix')
        assert data == b'over unix', haproxy.log()
        echo_server.wait_log(re.escape(
            f'connection from 127.0.0.1:{client[1]} to 127.0.0.1:'
            f'{front_port} (PROXY v2 TCP4 via unix:'))
        # A UNIX client of HAProxy, to the UNIX echo socket: served, and
        # logged once more, whatever family HAProxy sends for it.
        wait_connectable(f'{tmp_path}/front.sock', haproxy)
        data, _ = _through(f'{tmp_path}/front.sock', b'unix to unix')
        assert data == b'unix to unix', haproxy.log()
        line = echo_server.wait_log('connection from', count=2)[1]
        assert '(PROXY v2 LOCAL via unix:' in line
    finally:
        haproxy.stop()


def test_tls_frontend_v2_options_to_echo(tmp_path: Path,
                                         echo_server: ServerProcess) -> None:
    certs = make_cert_files(tmp_path)
    front, front_port = listening_socket()
    config = GLOBAL + f"""
frontend fe_tls
    mode tcp
    bind fd@{{fe}} ssl crt {certs.combined} ca-file {certs.ca_pem} verify optional alpn h2,http/1.1
    unique-id-format %ci:%cp
    default_backend be
backend be
    mode tcp
    server echo 127.0.0.1:{echo_server.port} send-proxy-v2 proxy-v2-options crc32c,unique-id,authority,ssl,cert-cn,ssl-cipher,cert-sig,cert-key
"""  # noqa: E501
    haproxy = HAProxy(tmp_path, config, {'fe': front})
    try:
        ctx = certs.client_context(client_cert=True)
        ctx.set_alpn_protocols(['h2'])
        with connect(('127.0.0.1', front_port)) as raw:
            with ctx.wrap_socket(raw, server_hostname='localhost') as tls:
                tls.sendall(b'tls through haproxy')
                assert recv_exactly(tls, 19) == b'tls through haproxy', \
                    haproxy.log()
                client_port = tls.getsockname()[1]
        line, = echo_server.wait_log('connection from')
        assert f'connection from 127.0.0.1:{client_port} to 127.0.0.1:' \
            f'{front_port} (PROXY v2 TCP4 via' in line
        assert 'authority=localhost' in line
        assert f'unique_id={f"127.0.0.1:{client_port}".encode().hex()}' \
            in line
        assert re.search(r'crc32c=0x[0-9a-f]{8}', line)
        ssl_part = re.search(r'ssl\(([^)]*)\)', line)
        assert ssl_part, line
        fields = ssl_part.group(1)
        assert 'version=TLSv1.' in fields
        assert 'cipher=' in fields
        assert 'cn=client.example' in fields
        assert 'sig_alg=' in fields and 'key_alg=' in fields
        assert 'client_cert' in fields and 'verified' in fields
    finally:
        haproxy.stop()


def test_bad_headers_dropped_while_haproxy_client_served(
        tmp_path: Path, echo_server: ServerProcess) -> None:
    front, front_port = listening_socket()
    config = GLOBAL + f"""
frontend fe
    mode tcp
    bind fd@{{fe}}
    default_backend be
backend be
    mode tcp
    server echo 127.0.0.1:{echo_server.port} send-proxy-v2
"""
    haproxy = HAProxy(tmp_path, config, {'fe': front})
    try:
        good = connect(('127.0.0.1', front_port))
        good.sendall(b'first')
        assert recv_exactly(good, 5) == b'first', haproxy.log()
        for bad in (b'SSH-2.0-OpenSSH_9.2\r\n',
                    b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2',
                    b'\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01\x02',
                    b'PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n'):
            with connect(echo_server.address()) as sock:
                sock.sendall(bad)
                sock.shutdown(socket.SHUT_WR)
                assert closed_by_peer(sock)
        good.sendall(b'second')
        assert recv_exactly(good, 6) == b'second'
        good.close()
        assert len(echo_server.wait_log('dropped a connection',
                                        count=4)) == 4
    finally:
        haproxy.stop()


# -- proxyprotocol-server in front of HAProxy accept-proxy --------------------------

ACCEPT = """
frontend fe_http
    mode http
    bind {bind} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port] %[dst]:%[dst_port] authority=%[fc_pp_authority] id=%[fc_pp_unique_id,hex]"
"""  # noqa: E501


@pytest.mark.parametrize('host', LOOPBACKS)
@pytest.mark.parametrize('version', [1, 2])
def test_our_proxy_to_accept_proxy(tmp_path: Path, host: str,
                                   version: int) -> None:
    back, back_port = listening_socket()
    haproxy = HAProxy(tmp_path, GLOBAL + ACCEPT.format(bind='fd@{http}'),
                      {'http': back})
    proxy = proxy_process(tmp_path, '--service', host_port(host, 0),
                          f'127.0.0.1:{back_port}?pp=v{version}')
    try:
        with connect(proxy.address()) as sock:
            client = sock.getsockname()
            sock.sendall(b'GET / HTTP/1.0\r\nHost: test\r\n\r\n')
            response = recv_all(sock)
        assert response.startswith(b'HTTP/1.1 200'), (response,
                                                      haproxy.log())
        body = response.partition(b'\r\n\r\n')[2].decode()
        source, dest, authority, unique = body.split(' ')
        assert source == f'{client[0]}:{client[1]}'
        assert dest == f'{host}:{proxy.port}'
        assert authority == 'authority='
        # v2 carries our 16-byte UNIQUE_ID; HAProxy checked the CRC32C.
        assert len(unique) == (len('id=') + 32 if version == 2 else 3)
    finally:
        assert proxy.stop() == 0
        haproxy.stop()


def test_our_proxy_to_accept_proxy_over_unix(tmp_path: Path) -> None:
    path = tmp_path / 'h.sock'
    haproxy = HAProxy(tmp_path, GLOBAL + ACCEPT.format(bind=f'unix@{path}'))
    # HAProxy 2.6 refuses v2 headers with UNIX addresses (it sends LOCAL
    # for its own UNIX clients): a UNIX client goes with v1 (UNKNOWN).
    proxy = proxy_process(tmp_path, '--service', '127.0.0.1:0',
                          f'unix:{path}?pp=v2', '--service',
                          f'unix:{tmp_path}/p.sock', f'unix:{path}?pp=v1')
    try:
        wait_connectable(str(path), haproxy)
        with connect(proxy.address(0)) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(b'GET / HTTP/1.0\r\nHost: test\r\n\r\n')
            body = recv_all(sock).partition(b'\r\n\r\n')[2].decode()
        assert body.startswith(f'127.0.0.1:{client_port} '), \
            (body, haproxy.log())
        with connect(f'{tmp_path}/p.sock') as sock:
            sock.sendall(b'GET / HTTP/1.0\r\nHost: test\r\n\r\n')
            response = recv_all(sock)
        assert response.startswith(b'HTTP/1.1 200'), (response,
                                                      haproxy.log())
    finally:
        assert proxy.stop() == 0
        haproxy.stop()


def test_our_tls_proxy_sends_tlvs_haproxy_reads(tmp_path: Path) -> None:
    certs = make_cert_files(tmp_path)
    back, back_port = listening_socket()
    haproxy = HAProxy(tmp_path, GLOBAL + ACCEPT.format(bind='fd@{http}'),
                      {'http': back})
    proxy = proxy_process(
        tmp_path, '--service',
        f'ssl://127.0.0.1:0?cert={certs.server_pem}&key={certs.server_key}',
        f'127.0.0.1:{back_port}')
    try:
        ctx = certs.client_context()
        with connect(proxy.address()) as raw:
            with ctx.wrap_socket(raw, server_hostname='localhost') as tls:
                client_port = tls.getsockname()[1]
                tls.sendall(b'GET / HTTP/1.0\r\nHost: test\r\n\r\n')
                response = recv_all(tls)
        assert response.startswith(b'HTTP/1.1 200'), (response,
                                                      haproxy.log())
        body = response.partition(b'\r\n\r\n')[2].decode()
        assert body.startswith(f'127.0.0.1:{client_port} ')
        assert ' authority=localhost ' in body
    finally:
        assert proxy.stop() == 0
        haproxy.stop()
