"""Helpers for the tests of the reference servers and their real peers.

* :class:`ServerProcess` runs ``proxyprotocol-server`` or
  ``proxyprotocol-echo`` (``python -m``) with a log file, waits for it to be
  ready and reads the addresses it listens on from its log (tests pass port
  0, so there is no port race).
* :class:`HAProxy` and :class:`Nginx` run the real thing in the foreground
  with a generated configuration in a temporary directory; their listening
  sockets are created here on ephemeral loopback ports and inherited
  (HAProxy ``bind fd@N``; nginx's ``NGINX`` variable), so they are ready as
  soon as they start. All are stopped by their PID.
* :class:`Recorder` is a backend for in-process proxy tests: it reads the
  PROXY header of each connection, keeps it, and echoes the rest.
* :func:`running_proxy` runs a :class:`~proxyprotocol.server.service.ProxyServer`
  in the test's event loop.

Every wait is bounded by :data:`WAIT`, every test loop by :data:`RUN_LIMIT`.

"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, AsyncIterator, Awaitable, Callable, Optional,
                    TypeVar, Union)

import pytest

from proxyprotocol import HeaderParser, ParsedHeader, ProxyProtocolError
from proxyprotocol.server.address import Address
from proxyprotocol.server.service import ProxyServer, Service, ServiceOptions

T = TypeVar('T')

#: The bound on any single wait, in seconds.
WAIT = 15.0
#: The bound on a whole test's event loop, in seconds.
RUN_LIMIT = 90.0


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(('::1', 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 loopback')

try:
    import uvloop as _uvloop
except ImportError:   # pragma: no cover - optional
    _uvloop = None  # type: ignore[assignment]
HAS_UVLOOP = _uvloop is not None

#: The event loops a test can run on.
LOOPS = [
    pytest.param('asyncio', id='asyncio'),
    pytest.param('uvloop', id='uvloop', marks=pytest.mark.skipif(
        not HAS_UVLOOP, reason='uvloop is not installed')),
]


def run(main: Callable[[], Awaitable[T]], loop_kind: str = 'asyncio') -> T:
    """Run ``main()`` on a fresh loop of the given kind, bounded by
    :data:`RUN_LIMIT`; tasks left over are cancelled."""
    if loop_kind == 'uvloop':
        assert _uvloop is not None
        loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def bounded() -> T:
        return await asyncio.wait_for(main(), RUN_LIMIT)
    try:
        return loop.run_until_complete(bounded())
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=WAIT))
        loop.close()


def split_address(text: str) -> Union[tuple[str, int], str]:
    """``'127.0.0.1:80'`` -> ``('127.0.0.1', 80)``; ``'[::1]:80'`` ->
    ``('::1', 80)``; ``'unix:/p'`` -> ``'/p'``."""
    if text.startswith('unix:'):
        path = text[5:]
        return '\x00' + path[1:] if path.startswith('@') else path
    host, _, port = text.rpartition(':')
    return host.strip('[]'), int(port)


def connect(address: Union[tuple[str, int], str],
            timeout: float = WAIT) -> socket.socket:
    """A blocking socket connected to ``address`` (TCP or UNIX)."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ':' in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
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


# -- our servers as processes --------------------------------------------------

_LISTENING = re.compile(r'listening on (\S+)')


class ServerProcess:
    """``python -m MODULE ARGS`` with its log in ``tmp_path``."""

    def __init__(self, tmp_path: Path, module: str, *args: str,
                 ready: int = 1, env: Optional[dict[str, str]] = None,
                 expect_ready: bool = True) -> None:
        self.log_path = tmp_path / f'{module.rpartition(".")[2]}-' \
            f'{time.monotonic_ns()}.log'
        self.args = [sys.executable, '-m', module, *args]
        with open(self.log_path, 'wb') as log:
            self.popen = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **(env or {})})
        if expect_ready:
            self.wait_log(r' ready \(', count=ready)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(errors='replace')

    def wait_log(self, pattern: str, *, count: int = 1,
                 timeout: float = WAIT) -> list[str]:
        """Wait until ``pattern`` matches ``count`` log lines; returns
        them. Fails the test if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log().splitlines()
                     if regex.search(line)]
            if len(lines) >= count:
                return lines
            if self.popen.poll() is not None:
                raise AssertionError(
                    f'{self.args} exited ({self.popen.returncode}) before '
                    f'logging {pattern!r}:\n{self.log()}')
            if time.monotonic() > deadline:
                raise AssertionError(f'no {pattern!r} in the log within '
                                     f'{timeout} s:\n{self.log()}')
            time.sleep(0.02)

    @property
    def addresses(self) -> list[str]:
        """The addresses from the ``listening on`` lines."""
        return [m.group(1) for m in _LISTENING.finditer(self.log())]

    def address(self, index: int = 0) -> Union[tuple[str, int], str]:
        """A listening address as ``connect`` takes it."""
        return split_address(self.addresses[index])

    @property
    def port(self) -> int:
        address = self.address()
        assert isinstance(address, tuple)
        return address[1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(WAIT)
            raise AssertionError(f'{self.args} did not stop on {sig}:\n'
                                 f'{self.log()}')


def echo_process(tmp_path: Path, *args: str, **kwds: Any) -> ServerProcess:
    """``proxyprotocol-echo ARGS``."""
    return ServerProcess(tmp_path, 'proxyprotocol.server.echo', *args, **kwds)


def proxy_process(tmp_path: Path, *args: str, **kwds: Any) -> ServerProcess:
    """``proxyprotocol-server ARGS``."""
    return ServerProcess(tmp_path, 'proxyprotocol.server.main', *args,
                         **kwds)


# -- TLS ---------------------------------------------------------------------

@dataclass
class CertFiles:
    """A throw-away CA, a server certificate for ``localhost`` (and the
    loopback addresses), and a client certificate, as PEM files."""

    ca: Any
    ca_pem: Path
    server_pem: Path
    server_key: Path
    client_pem: Path
    client_key: Path
    combined: Path = field(default=Path())

    def client_context(self, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if client_cert:
            ctx.load_cert_chain(str(self.client_pem), str(self.client_key))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_pem), str(self.server_key))
        return ctx


def make_cert_files(tmp_path: Path) -> CertFiles:
    """Write a fresh ``trustme`` CA and certificates under ``tmp_path``."""
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    server = ca.issue_cert('localhost', '127.0.0.1', '::1')
    client = ca.issue_cert('client.example', common_name='client.example')
    files = CertFiles(ca, tmp_path / 'ca.pem', tmp_path / 'server.pem',
                      tmp_path / 'server.key', tmp_path / 'client.pem',
                      tmp_path / 'client.key', tmp_path / 'server-all.pem')
    ca.cert_pem.write_to_path(str(files.ca_pem))
    with open(files.server_pem, 'wb') as file:
        for blob in server.cert_chain_pems:
            file.write(blob.bytes())
    server.private_key_pem.write_to_path(str(files.server_key))
    with open(files.client_pem, 'wb') as file:
        for blob in client.cert_chain_pems:
            file.write(blob.bytes())
    client.private_key_pem.write_to_path(str(files.client_key))
    # HAProxy wants the key and the chain in one file.
    files.combined.write_bytes(files.server_pem.read_bytes()
                               + files.server_key.read_bytes())
    return files


# -- real peers ----------------------------------------------------------------

def listening_socket(host: str = '127.0.0.1') -> tuple[socket.socket, int]:
    """A listening TCP socket on an ephemeral port, to hand to a peer."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.create_server((host, 0), family=family)
    port: int = sock.getsockname()[1]
    return sock, port


class _Peer:
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def stop(self) -> None:
        """Stop by PID: TERM, then KILL after :data:`WAIT`."""
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(WAIT)


class HAProxy(_Peer):
    """HAProxy in the foreground (``-db``); ``{name}`` fields of the config
    become the descriptors of ``sockets`` (``bind fd@{name}``)."""

    def __init__(self, tmp_path: Path, config: str,
                 sockets: Optional[dict[str, socket.socket]] = None) -> None:
        sockets = sockets or {}
        fds = {name: sock.fileno() for name, sock in sockets.items()}
        self.config = config.format(**fds)
        path = tmp_path / 'haproxy.cfg'
        path.write_text(self.config)
        self.log_path = tmp_path / 'haproxy.log'
        with open(self.log_path, 'wb') as log:
            self.popen = subprocess.Popen(
                ['haproxy', '-db', '-f', str(path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, pass_fds=tuple(fds.values()),
                cwd=tmp_path)
        for sock in sockets.values():
            sock.close()


NGINX_MODULES = Path('/usr/lib/nginx/modules')


class Nginx(_Peer):
    """nginx in the foreground (a master and one worker) with ``body`` as
    the main part of its configuration; ``sockets`` are inherited (nginx
    matches them to its ``listen`` lines by address; nginx 1.22 crashes on
    inherited sockets with ``master_process off``)."""

    def __init__(self, tmp_path: Path, body: str,
                 sockets: tuple[socket.socket, ...] = (),
                 stream: bool = False) -> None:
        prefix = tmp_path / 'nginx'
        for sub in ('logs', 'tmp'):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        modules = ''
        if stream and (NGINX_MODULES / 'ngx_stream_module.so').exists():
            modules = f'load_module {NGINX_MODULES}/ngx_stream_module.so;\n'
        conf = prefix / 'nginx.conf'
        user = 'user root;\n' if os.geteuid() == 0 else ''
        conf.write_text(
            f'{modules}daemon off;\nworker_processes 1;\n{user}'
            f'pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log '
            f'info;\nevents {{ worker_connections 256; }}\n{body}\n')
        self.log_path = prefix / 'logs' / 'error.log'
        self.log_path.touch()
        fds = [sock.fileno() for sock in sockets]
        env = {**os.environ}
        if fds:
            env['NGINX'] = ';'.join(str(fd) for fd in fds) + ';'
        with open(prefix / 'logs' / 'stderr.log', 'wb') as log:
            self.popen = subprocess.Popen(
                ['nginx', '-p', str(prefix), '-c', str(conf), '-e',
                 str(self.log_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=tuple(fds), env=env, cwd=prefix)
        for sock in sockets:
            sock.close()

    @staticmethod
    def temp_paths(tmp_path: Path) -> str:
        """Configuration lines that keep nginx's files in the prefix."""
        tmp = tmp_path / 'nginx' / 'tmp'
        return (f'client_body_temp_path {tmp}/body; proxy_temp_path '
                f'{tmp}/proxy; fastcgi_temp_path {tmp}/fcgi; '
                f'uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi; '
                f'access_log off;')


def wait_connectable(address: Union[tuple[str, int], str],
                     peer: Optional[_Peer] = None,
                     timeout: float = WAIT) -> None:
    """Wait until something accepts connections at ``address``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(address, timeout=2).close()
            return
        except OSError:
            if peer is not None and peer.popen.poll() is not None:
                raise AssertionError(f'the peer exited:\n{peer.log()}')
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def http_get(address: Union[tuple[str, int], str], path: str = '/',
             timeout: float = WAIT) -> bytes:
    """The body of a ``GET`` over HTTP/1.0 (a raw socket, no library)."""
    with connect(address, timeout) as sock:
        sock.sendall(f'GET {path} HTTP/1.0\r\nHost: test\r\n\r\n'.encode())
        response = recv_all(sock)
    head, _, body = response.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.'), response
    return body


# -- in-process backends and proxies ------------------------------------------

class Recorder:
    """A backend that reads each connection's PROXY header, keeps it, then
    echoes what follows (passing on the end of stream)."""

    def __init__(self) -> None:
        self.headers: list[ParsedHeader] = []
        self.errors: list[BaseException] = []
        self.received: list[bytes] = []
        self.got_header = asyncio.Condition()
        self.server: Optional[asyncio.AbstractServer] = None
        self.address: Union[tuple[str, int], str] = ''
        self.pause = False

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        parser = HeaderParser()
        try:
            while parser.header is None:
                data = await reader.read(65536)
                if not data:
                    return
                parser.feed(data)
        except ProxyProtocolError as exc:
            self.errors.append(exc)
            writer.close()
            return
        assert parser.header is not None
        async with self.got_header:
            self.headers.append(parser.header)
            self.got_header.notify_all()
        rest = parser.trailing_data
        received = bytearray(rest)
        try:
            if rest:
                writer.write(rest)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                received += data
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            self.errors.append(exc)
        finally:
            self.received.append(bytes(received))
            writer.close()

    async def start(self, where: str = '127.0.0.1', *,
                    ssl_context: Optional[ssl.SSLContext] = None) -> str:
        """Listen on ``where`` (a host, or ``unix:PATH``); returns the
        address as ``proxyprotocol-server`` takes it."""
        if where.startswith('unix:'):
            path = where[5:]
            self.server = await asyncio.start_unix_server(self._handle, path)
            self.address = path
            return where
        self.server = await asyncio.start_server(self._handle, where, 0)
        sockname = self.server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        host = f'[{sockname[0]}]' if ':' in sockname[0] else sockname[0]
        return f'{host}:{sockname[1]}'

    async def wait_headers(self, count: int = 1) -> list[ParsedHeader]:
        """Wait until ``count`` headers have arrived."""
        async with self.got_header:
            await asyncio.wait_for(self.got_header.wait_for(
                lambda: len(self.headers) >= count), WAIT)
        return self.headers

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def running_proxy(listen: str, dest: str, *,
                        options: Optional[ServiceOptions] = None,
                        **kwds: Any) -> AsyncIterator[tuple[ProxyServer,
                                                            Service]]:
    """A :class:`ProxyServer` with one service, in the running loop."""
    server = ProxyServer(**kwds)
    try:
        service = server.add(Address(listen, server=True), Address(dest),
                             options or ServiceOptions())
        service.bind()
        server.start()
        yield server, service
    finally:
        await server.shutdown(0)


def service_address(service: Service, index: int = 0
                    ) -> Union[tuple[str, int], str]:
    """Where a running service listens."""
    sockname = service.sockets[index].getsockname()
    if isinstance(sockname, tuple):
        return sockname[0], sockname[1]
    return str(sockname)


async def aconnect(address: Union[tuple[str, int], str]
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream connection (TCP or UNIX)."""
    if isinstance(address, str):
        return await asyncio.wait_for(
            asyncio.open_unix_connection(address), WAIT)
    return await asyncio.wait_for(asyncio.open_connection(*address[:2]),
                                  WAIT)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the end of stream, within :data:`WAIT`."""
    return await asyncio.wait_for(reader.read(), WAIT)


async def ended(reader: asyncio.StreamReader) -> bytes:
    """What arrives until the peer closes or resets the connection (within
    :data:`WAIT`)."""
    chunks = []
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), WAIT)
            if not data:
                break
            chunks.append(data)
    except ConnectionError:
        pass
    return b''.join(chunks)


def have(binary: str) -> bool:
    """Whether ``binary`` is on the PATH."""
    return shutil.which(binary) is not None
