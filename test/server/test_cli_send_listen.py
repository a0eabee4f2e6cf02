"""``proxyprotocol send`` and ``listen`` end to end, over loopback.

Each test runs the real command (``python -m proxyprotocol.cli``) in a
subprocess and talks to it over 127.0.0.1, ::1 or UNIX sockets in a
temporary directory. Every wait is bounded.

"""

from __future__ import annotations

import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from proxyprotocol import ParsedHeader, parse_header
from proxyprotocol.result import ProxyResultIPv4, ProxyResultUnix
from support.net import needs_ipv6
from support.procs import pump_lines, stop_process

pytestmark = pytest.mark.timeout(180)

COMMAND = [sys.executable, '-m', 'proxyprotocol.cli']
WAIT = 30.0


class Proc:
    """A running command whose output lines are read in the background."""

    def __init__(self, *args: str, stdin: bool = False) -> None:
        self.popen = subprocess.Popen(
            [*COMMAND, *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err_lines: list[bytes] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.out = pump_lines(self.popen.stdout)
        self.err = pump_lines(self.popen.stderr)

    def line(self, lines: queue.Queue[Optional[bytes]],
             timeout: float = WAIT) -> bytes:
        """The next line, or fail after ``timeout`` seconds or at EOF."""
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f'no output within {timeout} s') from None
        if line is None:
            raise AssertionError('the command ended: '
                                 + b''.join(self.err_lines).decode())
        return line

    def event(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next JSON line on stdout."""
        event: dict[str, Any] = json.loads(self.line(self.out, timeout))
        return event

    def stop(self) -> int:
        """Stop the command (by its PID) and return its exit status."""
        return stop_process(self.popen, timeout=WAIT)


def start_listen(*args: str) -> tuple[Proc, str]:
    """Start ``listen`` and return it with the address it listens on."""
    proc = Proc('listen', *args)
    line = proc.line(proc.err).decode().strip()
    assert line.startswith('listening on '), line
    return proc, line[len('listening on '):]


def send(target: str, *args: str, data: bytes = b'',
         timeout: float = WAIT) -> subprocess.CompletedProcess[bytes]:
    """Run ``send`` to completion with ``data`` on stdin."""
    return subprocess.run([*COMMAND, 'send', *args, target], input=data,
                          capture_output=True, timeout=timeout, check=False)


def test_send_to_listen_v2_tlvs_echo() -> None:
    listen, address = start_listen('--json', '--echo', '127.0.0.1:0')
    try:
        done = send(address, '-s', '192.0.2.7:4242', '-d', '198.51.100.1:443',
                    '--alpn', 'h2', '--authority', 'example.com',
                    '--unique-id', 'abc', '--ssl-version', 'TLSv1.3',
                    '--ssl-cn', 'client', '--aws-vpce-id', 'vpce-1',
                    '--tlv', '0xF0=00ff', '--crc32c',
                    data=b'hello\nworld\n')
        assert done.returncode == 0, done.stderr
        assert done.stdout == b'hello\nworld\n'
        event = listen.event()
        assert event['event'] == 'header'
        assert event['valid'] is True
        header = event['header']
        assert header['version'] == 2
        assert header['result']['source'] == {'address': '192.0.2.7',
                                              'port': 4242}
        tlvs = {t['name']: t for t in header['tlvs']}
        assert tlvs['ALPN']['text'] == 'h2'
        assert tlvs['AUTHORITY']['text'] == 'example.com'
        assert tlvs['UNIQUE_ID']['text'] == 'abc'
        assert tlvs['AWS']['value'] == 'vpce-1'
        assert tlvs['EXPERIMENT']['hex'] == '00ff'
        subs = {s['name']: s['text'] for s in tlvs['SSL']['sub_tlvs']}
        assert subs == {'SSL_VERSION': 'TLSv1.3', 'SSL_CN': 'client'}
        assert header['crc32c']['valid'] is True
        assert event['peer'].startswith('127.0.0.1:')
        assert event['local'] == address
        closed = listen.event()
        assert closed == {'event': 'closed', 'connection': 1,
                          'bytes_from_client': 12, 'bytes_to_client': 12}
    finally:
        listen.stop()


def test_send_default_addresses_v1_text_output() -> None:
    listen, address = start_listen('--count', '1', '127.0.0.1:0')
    try:
        done = send(address, '-1', '-v', data=b'ping')
        assert done.returncode == 0, done.stderr
        assert b'PROXY protocol v1 header' in done.stderr
        lines = [listen.line(listen.out).decode().rstrip() for _ in range(7)]
        assert lines[0].startswith('[1] connection from 127.0.0.1:')
        assert lines[1].startswith('[1] PROXY protocol v1 header, ')
        # Without --source, the header carries the connection's addresses.
        peer = lines[0].split()[3]
        assert f'[1]   source       {peer}' in lines
        assert f'[1]   destination  {address}' in lines
        assert listen.line(listen.out) == \
            b'[1] closed: 4 bytes from the client after the header, 0 bytes ' \
            b'to it\n'
        # --count 1: the command ends by itself.
        assert listen.popen.wait(WAIT) == 0
    finally:
        listen.stop()


def test_unix_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / 'pp.sock')
    listen, address = start_listen('--json', '--echo', f'unix:{path}')
    try:
        assert address == f'unix:{path}'
        done = send(path, '--family', 'unix', '-s', '/run/client.sock',
                    '-d', '/run/server.sock', data=b'over unix')
        assert done.returncode == 0, done.stderr
        assert done.stdout == b'over unix'
        event = listen.event()
        assert event['peer'] == '(unnamed)'
        assert event['header']['family'] == 'UNIX'
        assert event['header']['result']['destination'] == {
            'path': '/run/server.sock'}
        # Default addresses over a UNIX socket: the paths of both ends.
        done = send(f'unix:{path}', data=b'x')
        assert done.returncode == 0, done.stderr
        listen.event()
        event = listen.event()
        assert event['header']['result']['destination'] == {'path': path}
    finally:
        assert listen.stop() == 0
    # The socket file is removed on exit.
    assert not os.path.exists(path)


@needs_ipv6
def test_ipv6_target() -> None:
    listen, address = start_listen('--json', '--echo', '[::1]:0')
    try:
        assert address.startswith('[::1]:')
        done = send(address, data=b'six')
        assert done.returncode == 0, done.stderr
        assert done.stdout == b'six'
        event = listen.event()
        assert event['header']['family'] == 'INET6'
        assert event['header']['result']['destination']['address'] == '::1'
    finally:
        listen.stop()


class Backend:
    """A one-connection TCP server: it reads to EOF, then answers."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.received = b''
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(WAIT)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(WAIT)
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
            self.received = b''.join(chunks)
            conn.sendall(self.answer(self.received))
        self.sock.close()


def test_listen_forward_half_close() -> None:
    backend = Backend(lambda data: b'got:' + data)
    listen, address = start_listen(
        '--json', '--show-data', '--forward', f'127.0.0.1:{backend.port}',
        '127.0.0.1:0')
    try:
        # The backend answers only after EOF: send half-closes on stdin EOF,
        # listen passes the half-close on, and the answer comes back.
        done = send(address, '-s', '192.0.2.9:1000', '-d', '192.0.2.10:80',
                    data=b'request body')
        assert done.returncode == 0, done.stderr
        assert done.stdout == b'got:request body'
        backend.thread.join(WAIT)
        assert backend.received == b'request body'
        events = [listen.event() for _ in range(4)]
        assert events[0]['event'] == 'header'
        data = [e for e in events if e['event'] == 'data']
        assert {(e['direction'], bytes.fromhex(e['hex'])) for e in data} == {
            ('client', b'request body'), ('server', b'got:request body')}
        assert events[3] == {'event': 'closed', 'connection': 1,
                             'bytes_from_client': 12, 'bytes_to_client': 16}
    finally:
        listen.stop()


def test_listen_forward_keep_header() -> None:
    backend = Backend(lambda data: b'ok')
    listen, address = start_listen(
        '--forward', f'127.0.0.1:{backend.port}', '--keep-header',
        '127.0.0.1:0')
    try:
        done = send(address, '-s', '192.0.2.9:1000', '-d', '192.0.2.10:80',
                    '--unique-id', 'u1', data=b'after')
        assert done.returncode == 0, done.stderr
        assert done.stdout == b'ok'
        backend.thread.join(WAIT)
        parsed = parse_header(backend.received)
        assert isinstance(parsed, ParsedHeader)
        assert isinstance(parsed.result, ProxyResultIPv4)
        assert parsed.result.tlv.unique_id == b'u1'
        assert backend.received[parsed.length:] == b'after'
    finally:
        listen.stop()


def test_listen_header_timeout() -> None:
    listen, address = start_listen('--json', '--timeout', '0.5',
                                   '127.0.0.1:0')
    try:
        port = int(address.rsplit(':', 1)[1])
        with socket.create_connection(('127.0.0.1', port), WAIT) as sock:
            sock.sendall(b'PROXY TCP4 192.0.2.1')
            event = listen.event()
            # listen closes the connection after reporting.
            sock.settimeout(WAIT)
            assert sock.recv(10) == b''
        assert event['reason'] == 'timeout'
        assert event['need'] == {'line': True}
        assert event['input_length'] == 20
    finally:
        listen.stop()


def test_listen_invalid_and_truncated_headers() -> None:
    listen, address = start_listen('127.0.0.1:0')
    try:
        done = send(address, '--raw-header', '0d0a0d0a000d0a515549540a2211')
        assert done.returncode == 0 or b'reset by peer' in done.stderr, \
            done.stderr
        lines = [listen.line(listen.out).decode() for _ in range(4)]
        assert lines[1] == '[1] invalid PROXY protocol header: command 2 ' \
            'is neither LOCAL (0) nor PROXY (1)\n'
        assert lines[2] == '[1]   field   v2.command\n'
        assert lines[3] == '[1]   offset  12 (0xc)\n'
        port = int(address.rsplit(':', 1)[1])
        with socket.create_connection(('127.0.0.1', port), WAIT) as sock:
            sock.sendall(b'\r\n\r\n\x00\r\nQUIT\n\x21')
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                line = listen.line(listen.out).decode()
                if line.startswith('[2] the client closed'):
                    break
            assert line == '[2] the client closed after 13 bytes, before ' \
                'the header was complete\n'
            assert listen.line(listen.out) == \
                b'[2] incomplete PROXY protocol header: 13 bytes so far, ' \
                b'needs 3 more bytes\n'
    finally:
        listen.stop()


def test_send_exits_when_server_closes() -> None:
    # The server closes first; send must end although stdin stays open.
    server = socket.create_server(('127.0.0.1', 0))
    port = server.getsockname()[1]
    proc = Proc('send', f'127.0.0.1:{port}', stdin=True)
    try:
        server.settimeout(WAIT)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(WAIT)
            received = b''
            while len(received) < 28:
                data = conn.recv(65536)
                assert data
                received += data
            parsed = parse_header(received)
            assert isinstance(parsed, ParsedHeader)
            conn.sendall(b'bye\n')
        assert proc.line(proc.out) == b'bye\n'
        assert proc.popen.wait(WAIT) == 0
    finally:
        proc.stop()
        server.close()


def test_send_connection_errors(tmp_path: Path) -> None:
    server = socket.create_server(('127.0.0.1', 0))
    port = server.getsockname()[1]
    server.close()
    done = send(f'127.0.0.1:{port}')
    assert done.returncode == 1
    assert b'cannot connect to 127.0.0.1:' in done.stderr
    done = send(str(tmp_path / 'missing.sock'))
    assert done.returncode == 1
    done = subprocess.run([*COMMAND, 'send'], capture_output=True,
                          timeout=WAIT, check=False)
    assert done.returncode == 2
    assert b'a TARGET is needed' in done.stderr


def test_send_usage_error_after_connect() -> None:
    # The addresses of an IPv4 connection cannot go in an INET6 header.
    listen, address = start_listen('--count', '1', '127.0.0.1:0')
    try:
        done = send(address, '--family', 'inet6')
        assert done.returncode == 2
        assert b'needs IPv6 addresses' in done.stderr
    finally:
        listen.stop()


def test_listen_usage_errors(tmp_path: Path) -> None:
    done = subprocess.run([*COMMAND, 'listen', '--keep-header', ':0'],
                          capture_output=True, timeout=WAIT, check=False)
    assert done.returncode == 2
    (tmp_path / 'file').write_text('not a socket')
    done = subprocess.run(
        [*COMMAND, 'listen', f'unix:{tmp_path / "file"}'],
        capture_output=True, timeout=WAIT, check=False)
    assert done.returncode == 1
    assert b'exists' in done.stderr
    # A stale socket file of an earlier run is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / 'stale.sock'))
    stale.close()
    listen, address = start_listen(f'unix:{tmp_path / "stale.sock"}')
    assert listen.stop() == 0


def _tls_server(ca: Any, received: list[Any]
                ) -> tuple[socket.socket, threading.Thread]:
    # Reads a v2 header in clear, then TLS (as HAProxy accept-proxy + ssl).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = ca.issue_cert('localhost')
    cert.configure_cert(context)
    server = socket.create_server(('127.0.0.1', 0))

    def serve() -> None:
        server.settimeout(WAIT)
        conn, _ = server.accept()
        conn.settimeout(WAIT)
        fixed = b''
        while len(fixed) < 16:
            fixed += conn.recv(16 - len(fixed))
        rest = b''
        length = int.from_bytes(fixed[14:16], 'big')
        while len(rest) < length:
            rest += conn.recv(length - len(rest))
        received.append(parse_header(fixed + rest))
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                data = tls.recv(100)
                received.append(data)
                tls.sendall(b'secure:' + data)
        except (ssl.SSLError, OSError) as exc:
            received.append(exc)
        finally:
            conn.close()
            server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_send_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / 'ca.pem'))
    received: list[Any] = []
    server, thread = _tls_server(ca, received)
    port = server.getsockname()[1]
    proc = Proc('send', '--tls', '--tls-ca', str(tmp_path / 'ca.pem'),
                '--tls-sni', 'localhost', '--family', 'unix', '-s', '/a',
                '-d', '/b', f'127.0.0.1:{port}', stdin=True)
    try:
        assert proc.popen.stdin is not None
        proc.popen.stdin.write(b'tls data')
        proc.popen.stdin.flush()
        assert proc.popen.wait(WAIT) == 0
        thread.join(WAIT)
        assert received[0].result == ProxyResultUnix('/a', '/b',
                                                     protocol=socket.SOCK_STREAM)
        assert received[1] == b'tls data'
        assert proc.line(proc.out) == b'secure:tls data'
    finally:
        proc.stop()


def test_send_tls_unverified_server_fails(tmp_path: Path) -> None:
    trustme = pytest.importorskip('trustme')
    received: list[Any] = []
    server, thread = _tls_server(trustme.CA(), received)
    port = server.getsockname()[1]
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / 'other.pem'))
    done = send(f'127.0.0.1:{port}', '--tls', '--tls-ca',
                str(tmp_path / 'other.pem'), '--tls-sni', 'localhost')
    assert done.returncode == 1
    assert b'CERTIFICATE_VERIFY_FAILED' in done.stderr
    thread.join(WAIT)
    # The header went first, in clear; then the handshake failed.
    assert isinstance(received[0], ParsedHeader)
    assert isinstance(received[1], ssl.SSLError)


def test_listen_forward_target_down() -> None:
    closed = socket.create_server(('127.0.0.1', 0))
    port = closed.getsockname()[1]
    closed.close()
    listen, address = start_listen('--json', '--forward', f'127.0.0.1:{port}',
                                   '127.0.0.1:0')
    try:
        done = send(address, data=b'lost')
        # listen closes without reading 'lost', which may reset the
        # connection before send sees the end of it.
        assert done.returncode == 0 or b'reset by peer' in done.stderr, \
            done.stderr
        assert done.stdout == b''
        assert listen.event()['event'] == 'header'
        error = listen.event()
        assert error['event'] == 'error'
        assert error['message'].startswith(
            f'cannot forward to 127.0.0.1:{port}: ')
    finally:
        listen.stop()


# --- the same, in process (for the parts a subprocess cannot measure) ------

def _parse(*argv: str) -> Any:
    from proxyprotocol.cli import make_parser
    return make_parser().parse_args(list(argv))


def test_listen_in_process_unix_echo_and_errors(tmp_path: Path) -> None:
    import asyncio
    import io

    from proxyprotocol import build_header
    from proxyprotocol.cli import listen as listen_cmd

    path = str(tmp_path / 'in.sock')
    args = _parse('listen', '--json', '--echo', '--show-data', '--count', '3',
                  '--timeout', '0.5', f'unix:{path}')
    out = io.StringIO()
    header = build_header(ProxyResultUnix('/c', '/s'))

    async def scenario() -> int:
        serving = asyncio.create_task(listen_cmd._serve(args, out))
        for _ in range(200):
            if os.path.exists(path):
                break
            await asyncio.sleep(0.025)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(header + b'ping')
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        assert echoed == b'ping'
        # An invalid header, then one that never completes (timeout).
        for data in (b'GET / HTTP/1.0\r\n\r\n', b'PROXY '):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(data)
            assert await asyncio.wait_for(reader.read(), WAIT) == b''
            writer.close()
        return await asyncio.wait_for(serving, WAIT)

    assert asyncio.run(scenario()) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [(e['connection'], e['event']) for e in events]
    assert kinds == [(1, 'header'), (1, 'data'), (1, 'closed'),
                     (2, 'header'), (3, 'header')]
    assert events[0]['header']['result']['source'] == {'path': '/c'}
    assert events[1]['hex'] == b'ping'.hex()
    assert events[2]['bytes_to_client'] == 4
    assert events[3]['error']['field'] == 'signature'
    assert events[4]['reason'] == 'timeout'
    assert not os.path.exists(path)


def test_listen_in_process_forward_text(capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    import asyncio
    import io

    from proxyprotocol import build_header, result_from_sockaddrs
    from proxyprotocol.cli import listen as listen_cmd

    async def backend(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    out = io.StringIO()
    header = build_header(result_from_sockaddrs(('192.0.2.1', 1),
                                                ('192.0.2.2', 2)))

    async def scenario() -> int:
        server = await asyncio.start_server(backend, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        args = _parse('listen', '--forward', f'127.0.0.1:{port}',
                      '--keep-header', '--count', '1', '127.0.0.1:0')
        serving = asyncio.create_task(listen_cmd._serve(args, out))
        address = ''
        for _ in range(200):
            err = capsys.readouterr().err
            if err.startswith('listening on '):
                address = err.split()[-1]
                break
            await asyncio.sleep(0.025)
        host, _, listen_port = address.rpartition(':')
        reader, writer = await asyncio.open_connection(host, int(listen_port))
        writer.write(header + b'abc')
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        server.close()
        # The backend got the header too, and upper-cased everything.
        assert answer == header.upper() + b'ABC'
        return await asyncio.wait_for(serving, WAIT)

    assert asyncio.run(scenario()) == 0
    text = out.getvalue()
    assert '[1]   source       192.0.2.1:1\n' in text
    assert text.endswith('[1] closed: 3 bytes from the client after the '
                         f'header, {len(header) + 3} bytes to it\n')


def test_send_in_process(monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from proxyprotocol.cli import main

    server = socket.create_server(('127.0.0.1', 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        server.settimeout(WAIT)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(WAIT)
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
            received.append(b''.join(chunks))
            conn.sendall(b'done')
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'stdin bytes')
    os.close(write_fd)
    stdout = io.BytesIO()

    class Stdin:
        def fileno(self) -> int:
            return read_fd

    class Stdout:
        buffer = stdout

    monkeypatch.setattr(sys, 'stdin', Stdin())
    monkeypatch.setattr(sys, 'stdout', Stdout())
    try:
        status = main(['send', '-v', '-s', '192.0.2.1:1', '-d', '192.0.2.2:2',
                       f'127.0.0.1:{port}'])
    finally:
        os.close(read_fd)
    thread.join(WAIT)
    assert status == 0
    assert stdout.getvalue() == b'done'
    parsed = parse_header(received[0])
    assert isinstance(parsed, ParsedHeader)
    assert received[0][parsed.length:] == b'stdin bytes'
    assert 'source       192.0.2.1:1' in capsys.readouterr().err
