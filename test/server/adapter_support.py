"""Shared helpers for the adapter tests (streams, protocols, TLS, policy).

Servers listen on 127.0.0.1, ::1 or a UNIX socket in a temporary
directory, always on an ephemeral port. Every wait is bounded by
:data:`WAIT`; event loops (:mod:`support.loops`) and certificates
(:mod:`support.certs`) are shared with the other tests.

"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Union

import pytest

from proxyprotocol import build_header
from proxyprotocol.result import ProxyResult, ProxyResultUnix
from proxyprotocol.sockaddr import result_from_sockaddrs
from support.net import HAS_IPV6, HAS_UNIX

#: The bound on any single wait in a test, in seconds.
WAIT = 10.0

#: The client the headers in the tests claim to be.
CLIENT_V4 = ('203.0.113.7', 4321)
SERVICE_V4 = ('198.51.100.1', 443)
CLIENT_V6 = ('2001:db8::7', 4321)
SERVICE_V6 = ('2001:db8::1', 443)

#: Parameters for the three kinds of listener.
KINDS = [
    pytest.param('ipv4', id='ipv4'),
    pytest.param('ipv6', id='ipv6', marks=pytest.mark.skipif(
        not HAS_IPV6, reason='no IPv6 loopback')),
    pytest.param('unix', id='unix', marks=pytest.mark.skipif(
        not HAS_UNIX, reason='no UNIX sockets')),
]


def header(version: int = 1, source: Any = CLIENT_V4,
           dest: Any = SERVICE_V4, **kwargs: Any) -> bytes:
    """A header claiming a connection from ``source`` to ``dest``."""
    return build_header(result_from_sockaddrs(source, dest, **kwargs),
                        version=version)


def unix_header(source: str = '/run/client.sock',
                dest: str = '/run/service.sock') -> bytes:
    """A v2 header claiming a UNIX socket connection."""
    result: ProxyResult = ProxyResultUnix(source, dest,
                                          protocol=socket.SOCK_STREAM)
    return build_header(result, version=2)


@dataclass
class Listener:
    """Where a test server listens."""

    kind: str
    address: Union[tuple[str, int], str]

    @property
    def family(self) -> int:
        """The socket family of the listener."""
        return {'ipv4': socket.AF_INET, 'ipv6': socket.AF_INET6,
                'unix': getattr(socket, 'AF_UNIX', -1)}[self.kind]

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An asyncio stream connection to the server."""
        if self.kind == 'unix':
            assert isinstance(self.address, str)
            return await asyncio.wait_for(
                asyncio.open_unix_connection(self.address), WAIT)
        assert isinstance(self.address, tuple)
        return await asyncio.wait_for(
            asyncio.open_connection(*self.address), WAIT)

    def connect(self) -> socket.socket:
        """A blocking socket connected to the server (timeout :data:`WAIT`)."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(WAIT)
        try:
            sock.connect(self.address)
        except BaseException:
            sock.close()
            raise
        return sock


@contextlib.contextmanager
def unix_path() -> Iterator[str]:
    """A path for a UNIX socket in a fresh temporary directory."""
    with tempfile.TemporaryDirectory(prefix='pp-test-') as tmp:
        yield os.path.join(tmp, 's.sock')


@contextlib.asynccontextmanager
async def serve(kind: str, factory: Callable[[], asyncio.BaseProtocol]
                ) -> AsyncIterator[Listener]:
    """Run ``loop.create_server`` (or the UNIX variant) for the test."""
    loop = asyncio.get_running_loop()
    with unix_path() as path:
        if kind == 'unix':
            server = await loop.create_unix_server(factory, path)
            listener = Listener(kind, path)
        else:
            host = '127.0.0.1' if kind == 'ipv4' else '::1'
            server = await loop.create_server(factory, host, 0)
            address = server.sockets[0].getsockname()
            listener = Listener(kind, (address[0], address[1]))
        try:
            yield listener
        finally:
            server.close()
            # Python 3.12+ waits for the connections here; tests close
            # theirs, and the wait is bounded anyway.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), WAIT)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (or resets)."""
    try:
        return await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionResetError:
        return b''


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client stream, ignoring a connection already gone."""
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError,
                             asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), WAIT)


def client_hello(context: ssl.SSLContext
                 ) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO,
                            bytes]:
    """Start a TLS client in memory; returns it with its first flight."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname='localhost')
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return obj, incoming, outgoing, outgoing.read()


class MemoryTLSClient:
    """A TLS client over an asyncio stream, driven through memory buffers.

    It lets a test send the PROXY header and the ClientHello in one
    ``write`` (one segment), which ``open_connection(ssl=...)`` cannot.

    """

    def __init__(self, context: ssl.SSLContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.obj, self.incoming, self.outgoing, self.hello = \
            client_hello(context)
        self.reader = reader
        self.writer = writer
        self.plain = bytearray()

    async def handshake(self, prefix: bytes = b'', after: bytes = b'') -> None:
        """Send ``prefix`` + ClientHello in one write and finish the
        handshake; ``after`` (plaintext) rides with the client's second
        flight."""
        self.writer.write(prefix + self.hello)
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), WAIT)
            if not data:
                raise ConnectionResetError('closed during the handshake')
            self.incoming.write(data)
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self.writer.write(self.outgoing.read())
                continue
            break
        if after:
            self.obj.write(after)
        self.writer.write(self.outgoing.read())

    def send(self, data: bytes) -> None:
        """Encrypt and send application data."""
        self.obj.write(data)
        self.writer.write(self.outgoing.read())

    async def receive_until(self, marker: bytes) -> bytes:
        """Decrypted data, read until ``marker`` appears or the peer
        closes."""
        while marker not in self.plain:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                data = await asyncio.wait_for(self.reader.read(65536), WAIT)
                if not data:
                    break
                self.incoming.write(data)
                continue
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            self.plain += chunk
        return bytes(self.plain)
