"""Blocking sockets and socketserver, over real loopback sockets."""

from __future__ import annotations

import ast
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Optional

import pytest

from support.net import HAS_UNIX
from adapter_support import (CLIENT_V4, KINDS, WAIT, Listener, header,
                             unix_header, unix_path)
from proxyprotocol import ProxyProtocolError, ProxyProtocolSyntaxError
from proxyprotocol.acceptor import (ConnectionInfo, ProxyProtocolEOFError,
                                    ProxyProtocolRejectedError,
                                    ProxyProtocolTimeoutError)
from proxyprotocol.blocking import ProxyProtocolMixin, read_header
from proxyprotocol.policy import HeaderConfig
from proxyprotocol.result import ProxyResultUnix

pytestmark = pytest.mark.timeout(60)

DATA = b'\x16\x03\x01 then application bytes\r\nPROXY not a header\n'


def listen(kind: str, path: str) -> tuple[socket.socket, Listener]:
    """A listening socket of the kind, and how to reach it."""
    if kind == 'unix':
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen()
        listener = Listener(kind, path)
    else:
        host = '127.0.0.1' if kind == 'ipv4' else '::1'
        family = socket.AF_INET if kind == 'ipv4' else socket.AF_INET6
        sock = socket.create_server((host, 0), family=family)
        listener = Listener(kind, sock.getsockname()[:2])
    sock.settimeout(WAIT)
    return sock, listener


def exchange(kind: str, client: Callable[[socket.socket], None],
             config: HeaderConfig = HeaderConfig(), rest: int = 0,
             server_timeout: Optional[float] = WAIT
             ) -> tuple[Any, bytes, Optional[float]]:
    """Accept one connection, read its header, then ``rest`` more bytes.

    Returns the outcome (info or error), the bytes read after the header
    and the socket's timeout afterwards. ``client`` runs in a thread.

    """
    with unix_path() as path:
        server, listener = listen(kind, path)

        def run_client() -> None:
            with listener.connect() as sock:
                client(sock)
                # Wait until the server is done with the connection.
                try:
                    sock.recv(1)
                except OSError:
                    pass

        thread = threading.Thread(target=run_client)
        thread.start()
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(server_timeout)
                outcome: Any
                try:
                    outcome = read_header(conn, config)
                except ProxyProtocolError as exc:
                    outcome = exc
                after_timeout = conn.gettimeout()
                data = b''
                while len(data) < rest:
                    chunk = conn.recv(rest - len(data))
                    if not chunk:
                        break
                    data += chunk
        finally:
            thread.join(WAIT)
            server.close()
    return outcome, data, after_timeout


def sender(payload: bytes, *, shut: bool = False,
           byte_at_a_time: bool = False) -> Callable[[socket.socket], None]:
    def client(sock: socket.socket) -> None:
        if byte_at_a_time:
            if sock.family != getattr(socket, 'AF_UNIX', None):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(payload)):
                sock.sendall(payload[i:i + 1])
                time.sleep(0.002)
        else:
            sock.sendall(payload)
        if shut:
            sock.shutdown(socket.SHUT_WR)
    return client


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('version', [1, 2])
def test_reads_exactly_the_header(kind: str, version: int) -> None:
    info, rest, timeout = exchange(kind, sender(header(version) + DATA),
                                   rest=len(DATA))
    assert isinstance(info, ConnectionInfo)
    assert info.peername == CLIENT_V4 and info.version == version
    assert rest == DATA
    assert timeout == WAIT  # the socket's own timeout is restored


@pytest.mark.parametrize('version', [1, 2])
def test_byte_at_a_time(version: int) -> None:
    info, rest, _ = exchange(
        'ipv4', sender(header(version) + DATA[:8], byte_at_a_time=True),
        rest=8)
    assert isinstance(info, ConnectionInfo) and info.peername == CLIENT_V4
    assert rest == DATA[:8]


def test_unix_header_on_blocking_socket() -> None:
    info, rest, _ = exchange('ipv4', sender(unix_header() + b'x'), rest=1)
    assert isinstance(info, ConnectionInfo)
    assert isinstance(info.result, ProxyResultUnix)
    assert info.peername == '/run/client.sock' and rest == b'x'


def test_failures() -> None:
    timeout, _, restored = exchange(
        'ipv4', sender(b'PROXY TCP4 1.2'), HeaderConfig(timeout=0.3),
        server_timeout=None)
    assert isinstance(timeout, ProxyProtocolTimeoutError)
    assert restored is None

    eof, _, _ = exchange('ipv4', sender(b'PROXY TCP4 1.2', shut=True),
                         HeaderConfig(timeout=600))
    assert isinstance(eof, ProxyProtocolEOFError)
    assert eof.partial == b'PROXY TCP4 1.2'

    v2_eof, _, _ = exchange('ipv4', sender(header(2)[:20], shut=True))
    assert isinstance(v2_eof, ProxyProtocolEOFError)

    garbage, _, _ = exchange('ipv4', sender(b'HELO example.com\r\n'))
    assert isinstance(garbage, ProxyProtocolSyntaxError)

    refused, _, _ = exchange('ipv4', sender(header(1)),
                             HeaderConfig(trusted=['10.0.0.0/8']))
    assert isinstance(refused, ProxyProtocolRejectedError)


def test_optional_and_ignore() -> None:
    optional = HeaderConfig(trusted_policy='optional')
    info, rest, _ = exchange('ipv4', sender(b'GET / HTTP/1.0\r\n'), optional,
                             rest=4)
    assert isinstance(info, ConnectionInfo) and info.header is None
    # The byte that showed there was no header was consumed: handed back.
    assert info.initial_data == b'G' and rest == b'ET /'

    ignore = HeaderConfig(trusted_policy='ignore')
    hdr = header(1)
    info, rest, _ = exchange('ipv4', sender(hdr), ignore, rest=len(hdr))
    assert isinstance(info, ConnectionInfo) and info.header is None
    assert rest == hdr and info.peername == info.socket_peername


# socketserver

class EchoHandler(socketserver.StreamRequestHandler):
    """Replies with the client address and the real peer."""

    def handle(self) -> None:
        line = self.rfile.readline()
        server = self.server
        assert isinstance(server, ProxyProtocolMixin)
        info = server.proxy_info(self.request)
        assert info is not None
        self.wfile.write(repr((self.client_address, info.socket_peername,
                               line)).encode() + b'\n')


@pytest.mark.parametrize('kind', [
    'ipv4', pytest.param('unix', marks=pytest.mark.skipif(
        not HAS_UNIX, reason='no UNIX sockets'))])
def test_socketserver_mixin(kind: str) -> None:
    failures: list[BaseException] = []

    class Mixin(ProxyProtocolMixin):
        proxy_config = HeaderConfig(timeout=WAIT)

        def proxy_header_failed(self, request: Any, client_address: Any,
                                exc: BaseException) -> None:
            failures.append(exc)
            super().proxy_header_failed(request, client_address, exc)

    with unix_path() as path:
        server: socketserver.BaseServer
        if kind == 'unix':
            class UnixServer(Mixin, socketserver.ThreadingUnixStreamServer):
                daemon_threads = True
            server = UnixServer(path, EchoHandler)
            listener = Listener('unix', path)
        else:
            class TCPServer(Mixin, socketserver.ThreadingTCPServer):
                daemon_threads = True
            server = TCPServer(('127.0.0.1', 0), EchoHandler)
            assert isinstance(server, socketserver.TCPServer)
            host, port = server.server_address[:2]
            listener = Listener('ipv4', (str(host), int(port)))
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={'poll_interval': 0.05})
        thread.start()
        try:
            with listener.connect() as sock:
                sock.sendall(b'not a header\n')
                try:
                    reply = sock.recv(100)
                except ConnectionResetError:  # closed with unread bytes
                    reply = b''
                assert reply == b''  # closed, no handler
            with listener.connect() as sock:
                local = sock.getsockname()
                sock.sendall(header(1) + b'hello\n')
                reply = sock.makefile('rb').readline()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(WAIT)
    client, real_peer, line = ast.literal_eval(reply.decode())
    assert client == CLIENT_V4 and line == b'hello\n'
    if kind == 'ipv4':
        assert real_peer[:2] == local[:2]
    assert [type(e) for e in failures] == [ProxyProtocolSyntaxError]
