"""Shared helpers for the framework integration tests (test_contrib_*).

Real HAProxy runs in front of the framework with ``send-proxy-v2``: its
listening socket is bound by the test on an ephemeral loopback port and
inherited (``bind fd@N``), so the test knows the port and there is no race.
Servers started as subprocesses are stopped by PID. Every wait is bounded
by :data:`WAIT`.

"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Iterable, Optional, Sequence

import pytest

#: The bound on any single wait, in seconds.
WAIT = 20.0
#: The directory of this module (the test applications live here).
HERE = Path(__file__).resolve().parent

HAPROXY = shutil.which('haproxy') or (
    '/usr/sbin/haproxy' if os.path.exists('/usr/sbin/haproxy') else None)

#: Skip a test that needs HAProxy when it is not installed.
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None,
    reason='haproxy is not installed (apt-get install haproxy)')


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(('::1', 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 loopback')

#: The loopback hosts tested, with their socket family.
LOOPBACKS = [pytest.param('127.0.0.1', id='ipv4'),
             pytest.param('::1', id='ipv6', marks=needs_ipv6)]


def family_of(host: str) -> socket.AddressFamily:
    """The socket family of a literal address."""
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 brackets."""
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def listening_socket(host: str = '127.0.0.1') -> socket.socket:
    """A listening TCP socket on an ephemeral loopback port."""
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    return sock


class HAProxy:
    """HAProxy in the foreground, in TCP mode, sending a v2 header to one
    server.

    Args:
        tmp_path: Where its configuration and log go.
        server: The server's address (``host:port``).
        front: The loopback host HAProxy listens on.
        server_options: More options for the ``server`` line, e.g.
            ``ssl verify none`` or ``proxy-v2-options crc32c``.
        frontend_lines: More lines for the frontend section.

    """

    def __init__(self, tmp_path: Path, server: str, *,
                 front: str = '127.0.0.1',
                 server_options: str = '',
                 frontend_lines: Sequence[str] = ()) -> None:
        assert HAPROXY is not None
        self.front = front
        listener = listening_socket(front)
        self.port: int = listener.getsockname()[1]
        fd = listener.fileno()
        extra = ''.join(f'    {line}\n' for line in frontend_lines)
        config = (
            'global\n'
            '    maxconn 200\n'
            'defaults\n'
            '    mode tcp\n'
            '    timeout connect 5s\n'
            '    timeout client 30s\n'
            '    timeout server 30s\n'
            'frontend fe\n'
            f'    bind fd@{fd}\n'
            f'{extra}'
            '    default_backend be\n'
            'backend be\n'
            f'    server app {server} send-proxy-v2 {server_options}\n')
        path = tmp_path / f'haproxy-{self.port}.cfg'
        path.write_text(config)
        self.log_path = tmp_path / f'haproxy-{self.port}.log'
        with open(self.log_path, 'wb') as log:
            self.popen = subprocess.Popen(
                [HAPROXY, '-db', '-f', str(path)], pass_fds=[fd],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        listener.close()

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return (self.front, self.port)

    def log(self) -> str:
        """HAProxy's output so far."""
        return self.log_path.read_text(errors='replace')

    def stop(self) -> None:
        """Stop HAProxy by its PID."""
        stop_process(self.popen)


def stop_process(popen: subprocess.Popen[Any],
                 sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop a process this test started, by its PID, within bounds."""
    if popen.poll() is None:
        popen.send_signal(sig)
        try:
            popen.wait(WAIT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(WAIT)


class Proc:
    """A server subprocess whose output lines are collected in the
    background.

    Args:
        args: The command.
        env: Extra environment variables.
        cwd: The working directory.

    """

    def __init__(self, args: Sequence[str], *,
                 env: Optional[dict[str, str]] = None,
                 cwd: Optional[Path] = None) -> None:
        full_env = dict(os.environ)
        for name in list(full_env):
            if name.startswith('PROXYPROTOCOL_'):
                del full_env[name]
        full_env['PYTHONUNBUFFERED'] = '1'
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            list(args), env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.output: list[str] = []
        assert self.popen.stdout is not None
        threading.Thread(target=self._pump, args=(self.popen.stdout,),
                         daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.put(line.decode(errors='replace'))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first output line matching ``pattern``; fail after
        ``timeout`` seconds or when the process ends."""
        regex = re.compile(pattern)
        for _ in range(10000):
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f'no line matching {pattern!r} within {timeout} s:\n'
                    + ''.join(self.output)) from None
            if line is None:
                raise AssertionError(
                    f'the process ended ({self.popen.wait(WAIT)}) before a '
                    f'line matching {pattern!r}:\n' + ''.join(self.output))
            self.output.append(line)
            match = regex.search(line)
            if match is not None:
                return match
        raise AssertionError('too much output')  # pragma: no cover

    def text(self) -> str:
        """Everything printed so far (lines already waited for, and the
        rest if the process has ended)."""
        for _ in range(100000):
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
        return ''.join(self.output)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the process by its PID (with ``sig`` first)."""
        stop_process(self.popen, sig)


def python(*args: str) -> list[str]:
    """A command running this Python."""
    return [sys.executable, *args]


# --- clients -----------------------------------------------------------------

def connect(address: tuple[str, int]) -> socket.socket:
    """A client socket connected to ``address``, with a bounded timeout."""
    sock = socket.create_connection(address, timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


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


def make_certificate(tmp_path: Path) -> tuple[str, str]:
    """A server certificate for 127.0.0.1 / ::1 / localhost:
    ``(certfile, keyfile)``."""
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    cert = ca.issue_cert('localhost', '127.0.0.1', '::1')
    certfile = tmp_path / 'server.pem'
    keyfile = tmp_path / 'server.key'
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)
