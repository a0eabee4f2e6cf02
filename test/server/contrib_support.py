"""Shared helpers for the framework integration tests (test_contrib_*).

Real HAProxy (:class:`support.haproxy.HAProxyV2`) runs in front of the
framework with ``send-proxy-v2``; servers started as subprocesses
(:class:`support.procs.Proc`) are stopped by PID. This module holds the
HTTP and WebSocket clients. Every wait is bounded by :data:`WAIT`.

"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any, Iterable

#: The bound on any single wait, in seconds.
WAIT = 20.0
#: The directory of this module (the test applications live here).
HERE = Path(__file__).resolve().parent


def python(*args: str) -> list[str]:
    """A command running this Python."""
    return [sys.executable, *args]


# --- clients -----------------------------------------------------------------

def client_address(sock: socket.socket) -> tuple[str, int]:
    """The client socket's own ``(host, port)``: what the application must
    report as the client."""
    name = sock.getsockname()
    return (name[0], name[1])


class HTTPResponse:
    """One parsed HTTP/1.1 response."""

    def __init__(self, status: int, headers: dict[str, str],
                 body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class HTTPConnection:
    """A minimal HTTP/1.1 keep-alive client over a blocking socket (the
    test needs the exact client socket, and nothing else may stand in
    between)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b''

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def request(self, path: str = '/', *, method: str = 'GET',
                headers: Iterable[tuple[str, str]] = (),
                host: str = 'example.test') -> HTTPResponse:
        """Send a request and read its response."""
        lines = [f'{method} {path} HTTP/1.1', f'Host: {host}',
                 *(f'{name}: {value}' for name, value in headers)]
        self.sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode())
        return self.read_response()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError('the server closed the connection')
        self.buffer += data

    def read_response(self) -> HTTPResponse:
        """Read one response (with Content-Length or chunked body)."""
        for _ in range(1000):
            if b'\r\n\r\n' in self.buffer:
                break
            self._fill()
        head, self.buffer = self.buffer.split(b'\r\n\r\n', 1)
        status_line, *header_lines = head.decode('latin-1').split('\r\n')
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        if headers.get('transfer-encoding', '').lower() == 'chunked':
            body = self._read_chunked()
        else:
            body = self._read_exactly(int(headers.get('content-length', 0)))
        return HTTPResponse(status, headers, body)

    def _read_exactly(self, size: int) -> bytes:
        for _ in range(100000):
            if len(self.buffer) >= size:
                break
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_chunked(self) -> bytes:
        body = b''
        for _ in range(100000):
            for _ in range(1000):
                if b'\r\n' in self.buffer:
                    break
                self._fill()
            line, self.buffer = self.buffer.split(b'\r\n', 1)
            size = int(line.split(b';')[0], 16)
            chunk = self._read_exactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
        raise AssertionError('endless chunked body')  # pragma: no cover

    def refused(self, data: bytes = b'') -> bool:
        """Send ``data`` (if the server has not closed already) and tell
        whether the server closed the connection without a response."""
        try:
            if data:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return True
        return self.closed_without_response()

    def closed_without_response(self) -> bool:
        """Whether the server closed (or reset) the connection without
        sending anything."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        return data == b''


def websocket_handshake(sock: socket.socket, path: str = '/ws',
                        host: str = 'example.test') -> bytes:
    """Open a WebSocket over ``sock`` (RFC 6455 client handshake); the
    bytes received after the 101 response are returned."""
    key = 'dGhlIHNhbXBsZSBub25jZQ=='
    request = (f'GET {path} HTTP/1.1\r\nHost: {host}\r\n'
               'Upgrade: websocket\r\nConnection: Upgrade\r\n'
               f'Sec-WebSocket-Key: {key}\r\n'
               'Sec-WebSocket-Version: 13\r\n\r\n')
    sock.sendall(request.encode())
    data = b''
    for _ in range(1000):
        if b'\r\n\r\n' in data:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f'closed during the handshake: {data!r}')
        data += chunk
    head, rest = data.split(b'\r\n\r\n', 1)
    assert head.startswith(b'HTTP/1.1 101'), head
    # The accept value for the RFC's sample key.
    assert b's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' in head, head
    return rest


def websocket_send_text(sock: socket.socket, text: str) -> None:
    """Send one masked text frame (payload shorter than 126 bytes)."""
    payload = text.encode()
    assert len(payload) < 126
    mask = b'\x01\x02\x03\x04'
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)


def websocket_receive_text(sock: socket.socket, buffer: bytes = b''
                           ) -> tuple[str, bytes]:
    """Receive one unmasked text frame; returns it and the bytes after."""
    def need(size: int) -> None:
        nonlocal buffer
        for _ in range(10000):
            if len(buffer) >= size:
                return
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError('closed while reading a frame')
            buffer += chunk
    need(2)
    assert buffer[0] == 0x81, buffer[:2]
    length = buffer[1] & 0x7F
    offset = 2
    if length == 126:
        need(4)
        length = int.from_bytes(buffer[2:4], 'big')
        offset = 4
    elif length == 127:
        need(10)
        length = int.from_bytes(buffer[2:10], 'big')
        offset = 10
    need(offset + length)
    text = buffer[offset:offset + length].decode()
    return text, buffer[offset + length:]
