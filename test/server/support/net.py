"""Loopback sockets and blocking clients for the tests.

Servers listen on 127.0.0.1, ::1 or a UNIX socket, always on an ephemeral
port (bind port 0), so parallel runs do not clash. Every blocking call
here has a timeout.

"""

from __future__ import annotations

import socket
from typing import Union

import pytest

#: The default bound on a blocking socket call or a wait, in seconds.
WAIT = 20.0

#: A TCP ``(host, port)`` or a UNIX socket path.
SockAddress = Union[tuple[str, int], str]


def has_ipv6() -> bool:
    """Whether the IPv6 loopback can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(('::1', 0))
    except OSError:
        return False
    return True


HAS_IPV6 = has_ipv6()
HAS_UNIX = hasattr(socket, 'AF_UNIX')
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 loopback')

#: The loopback hosts tested (IPv6 when it is there).
LOOPBACKS = [pytest.param('127.0.0.1', id='ipv4'),
             pytest.param('::1', id='ipv6', marks=needs_ipv6)]


def family_of(host: str) -> socket.AddressFamily:
    """The socket family of a literal address."""
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 brackets."""
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def listening_socket(host: str = '127.0.0.1') -> tuple[socket.socket, int]:
    """A listening TCP socket on an ephemeral port, to hand to a peer,
    with its port."""
    sock = socket.create_server((host, 0), family=family_of(host))
    port: int = sock.getsockname()[1]
    return sock, port


def split_address(text: str) -> SockAddress:
    """``'127.0.0.1:80'`` -> ``('127.0.0.1', 80)``; ``'[::1]:80'`` ->
    ``('::1', 80)``; ``'unix:/p'`` -> ``'/p'``."""
    if text.startswith('unix:'):
        path = text[5:]
        return '\x00' + path[1:] if path.startswith('@') else path
    host, _, port = text.rpartition(':')
    return host.strip('[]'), int(port)


def connect(address: SockAddress, timeout: float = WAIT) -> socket.socket:
    """A blocking socket connected to ``address`` (TCP or UNIX)."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock = socket.socket(family_of(address[0]), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def recv_all(sock: socket.socket, limit: int = 1 << 26) -> bytes:
    """Everything until the end of stream (bounded by the socket timeout
    and ``limit`` bytes)."""
    chunks = []
    total = 0
    while total < limit:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b''.join(chunks)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer if the stream ends first."""
    chunks = []
    while size > 0:
        data = sock.recv(min(size, 65536))
        if not data:
            break
        chunks.append(data)
        size -= len(data)
    return b''.join(chunks)


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer has closed (EOF or reset) within the timeout."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionError, OSError):
        return True


def http_get(address: SockAddress, path: str = '/',
             timeout: float = WAIT) -> bytes:
    """The body of a ``GET`` over HTTP/1.0 (a raw socket, no library)."""
    with connect(address, timeout) as sock:
        sock.sendall(f'GET {path} HTTP/1.0\r\nHost: test\r\n\r\n'.encode())
        response = recv_all(sock)
    head, _, body = response.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.'), response
    return body
