"""Helpers for the tests of the reference servers (in-process and as
processes).

* :func:`echo_process` and :func:`proxy_process` run ``proxyprotocol-echo``
  and ``proxyprotocol-server`` as :class:`support.procs.ServerProcess`.
* :class:`Recorder` is a backend for in-process proxy tests: it reads the
  PROXY header of each connection, keeps it, and echoes the rest.
* :func:`running_proxy` runs a :class:`~proxyprotocol.server.service.ProxyServer`
  in the test's event loop.

Sockets, loops, processes, certificates and the real peers (HAProxy, nginx)
come from the :mod:`support` package. Every wait is bounded by :data:`WAIT`.

"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Union

from proxyprotocol import HeaderParser, ParsedHeader, ProxyProtocolError
from proxyprotocol.server.address import Address
from proxyprotocol.server.service import ProxyServer, Service, ServiceOptions
from support.procs import ServerProcess

#: The bound on any single wait, in seconds.
WAIT = 15.0


def echo_process(tmp_path: Path, *args: str, **kwds: Any) -> ServerProcess:
    """``proxyprotocol-echo ARGS``."""
    return ServerProcess(tmp_path, 'proxyprotocol.server.echo', *args, **kwds)


def proxy_process(tmp_path: Path, *args: str, **kwds: Any) -> ServerProcess:
    """``proxyprotocol-server ARGS``."""
    return ServerProcess(tmp_path, 'proxyprotocol.server.main', *args,
                         **kwds)


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
