"""The 2020 (0.4) and 0.11 README flows, verbatim, over real sockets."""

from __future__ import annotations

import asyncio
import socket
from functools import partial
from ipaddress import IPv4Address
from typing import Any

import pytest

from support.loops import run
from adapter_support import (CLIENT_V4, KINDS, SERVICE_V4, WAIT, close, header,
                             read_until_closed, serve)
from proxyprotocol import ProxyProtocolError, ProxyProtocolSyntaxError
from proxyprotocol.acceptor import ProxyProtocolEOFError
# The 2020 README's imports:
from proxyprotocol.base import ProxyProtocol
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.result import (ProxyResult, ProxyResultIPv4,
                                  ProxyResultLocal, ProxyResultUnknown)
from proxyprotocol.sock import SocketInfo as SockSocketInfo
from proxyprotocol.sock import SocketInfoLocal, SocketInfoProxy
from proxyprotocol.socket import SocketInfo
from proxyprotocol.tlv import ProxyProtocolTLV
from proxyprotocol.version import ProxyProtocolVersion

pytestmark = pytest.mark.timeout(90)

AFTER = b'bytes after the header\n'


def start_0_4(pp: ProxyProtocol, seen: list[dict[str, Any]]) -> Any:
    """The 2020 README's server callback, recording what it sees."""
    async def on_connection(pp: ProxyProtocol,
                            reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        result = await pp.read(reader)
        info = SocketInfo(writer, result)
        print(info.family, info.peername)
        rest = await asyncio.wait_for(reader.read(len(AFTER)), WAIT) \
            if not isinstance(result, ProxyResultUnknown) else b''
        seen.append({
            'result': result, 'info': info, 'rest': rest,
            'family': info.family, 'peername': info.peername,
            'sockname': info.sockname, 'peername_ip': info.peername_ip,
            'peername_port': info.peername_port,
            'peername_str': info.peername_str,
            'sockname_ip': info.sockname_ip,
            'sockname_port': info.sockname_port,
            'sockname_str': info.sockname_str,
            'peercert': info.peercert,
            'from_localhost': info.from_localhost,
            'str': str(info), 'has_socket': 'socket' in info,
            'socket': info['socket'], 'get': info.get('nothing', 'dflt'),
            'protocol': info.protocol,
        })
        writer.write(b'ok\n')
        writer.close()
    return partial(on_connection, pp)


@pytest.mark.parametrize('name', ['detect', 'v1', 'v2'])
def test_2020_readme_flow(name: str) -> None:
    pp = ProxyProtocolDetect() if name == 'detect' \
        else ProxyProtocolVersion.get(name)
    assert isinstance(pp, ProxyProtocol)
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        server = await asyncio.start_server(start_0_4(pp, seen),
                                            '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            version = 1 if name == 'v1' else 2
            writer.write(header(version, protocol=socket.SOCK_STREAM)
                         + AFTER)
            assert await read_until_closed(reader) == b'ok\n'
            await close(writer)
    run(main)
    got = seen[0]
    assert isinstance(got['result'], ProxyResultIPv4)
    assert got['rest'] == AFTER  # nothing lost or duplicated
    assert got['family'] == socket.AF_INET
    assert got['peername'] == CLIENT_V4 and got['sockname'] == SERVICE_V4
    assert got['peername_ip'] == IPv4Address(CLIENT_V4[0])
    assert got['peername_port'] == CLIENT_V4[1]
    assert got['peername_str'] == '[203.0.113.7]:4321'
    assert got['sockname_ip'] == IPv4Address(SERVICE_V4[0])
    assert got['sockname_port'] == 443
    assert got['sockname_str'] == '[198.51.100.1]:443'
    assert got['peercert'] is None and got['from_localhost'] is False
    assert got['str'] == ("<SocketInfo peername='[203.0.113.7]:4321' "
                          "sockname='[198.51.100.1]:443' peercert=None "
                          "proxied=True>")
    assert got['has_socket'] and got['socket'] is not None
    assert got['get'] == 'dflt'
    assert got['protocol'] == socket.SOCK_STREAM
    assert isinstance(got['info'], SocketInfoProxy)


def test_2020_readme_noop() -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        pp = ProxyProtocolVersion.get()
        server = await asyncio.start_server(start_0_4(pp, seen),
                                            '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            local = writer.get_extra_info('sockname')
            writer.write(AFTER)
            assert await read_until_closed(reader) == b'ok\n'
            await close(writer)
            got = seen[0]
            assert got['peername'] == local
    run(main)
    got = seen[0]
    assert isinstance(got['result'], ProxyResultLocal)
    assert got['rest'] == AFTER
    assert got['family'] == socket.AF_INET
    assert got['from_localhost'] is True
    assert got['peername_str'] == f'[127.0.0.1]:{got["peername"][1]}'
    assert got['str'].startswith("<SocketInfo peername='[127.0.0.1]:")
    assert 'proxied' not in got['str']
    assert got['protocol'] == socket.IPPROTO_TCP or got['protocol'] == 0
    assert isinstance(got['info'], SocketInfoLocal)


@pytest.mark.parametrize('partial_header', [b'PROXY TCP4 1.2',
                                            b'\r\n\r\n\x00\r\nQUIT'])
def test_2020_readme_eof_gives_unknown(partial_header: bytes) -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        server = await asyncio.start_server(
            start_0_4(ProxyProtocolDetect(), seen), '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(partial_header)
            writer.write_eof()
            await read_until_closed(reader)
            await close(writer)
    run(main)
    result = seen[0]['result']
    assert isinstance(result, ProxyResultUnknown)
    assert isinstance(result.exception, EOFError)
    assert seen[0]['peername'] is None
    assert seen[0]['str'] == ('<SocketInfo peername=None sockname=None '
                              'peercert=None proxied=True>')


# The 0.11 README flow

def start_0_11(seen: list[Any], **kwargs: Any) -> Any:
    async def on_connection(reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter,
                            info: SockSocketInfo) -> None:
        print(info.family, info.peername)
        line = await asyncio.wait_for(reader.readline(), WAIT)
        seen.append((info, line))
        writer.write(b'ok ' + line)
        await writer.drain()
        writer.close()
    pp_detect = ProxyProtocolDetect()
    return ProxyProtocolReader(pp_detect).get_callback(on_connection,
                                                       **kwargs)


@pytest.mark.parametrize('kind', KINDS)
def test_0_11_readme_flow(kind: str) -> None:
    seen: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader()
            return asyncio.StreamReaderProtocol(reader, start_0_11(seen))
        async with serve(kind, factory) as listener:
            reader, writer = await listener.open()
            tlv = ProxyProtocolTLV(unique_id=b'from-haproxy')
            writer.write(header(2, tlv=tlv) + b'one\n')
            assert await read_until_closed(reader) == b'ok one\n'
            await close(writer)
            reader, writer = await listener.open()
            writer.write(header(1) + b'two\n')
            assert await read_until_closed(reader) == b'ok two\n'
            await close(writer)
        assert loop.is_running()
    run(main)
    (first, line1), (second, line2) = seen
    assert line1 == b'one\n' and line2 == b'two\n'
    assert isinstance(first, SocketInfoProxy)
    assert first.family == socket.AF_INET and first.peername == CLIENT_V4
    assert first.unique_id == b'from-haproxy'
    assert len(second.unique_id) == 16  # a fresh uuid4 per connection
    assert repr(second) == ("<SocketInfoProxy peername='[203.0.113.7]:4321' "
                            "sockname='[198.51.100.1]:443'>")
    assert str(second) == repr(second)


def test_0_11_get_callback_failures() -> None:
    seen: list[Any] = []
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        callback = start_0_11(seen, timeout=0.5)
        server = await asyncio.start_server(callback, '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]

            async def attempt(data: bytes, eof: bool) -> bytes:
                reader, writer = await asyncio.open_connection(
                    '127.0.0.1', port)
                writer.write(data)
                if eof:
                    writer.write_eof()
                reply = await read_until_closed(reader)
                await close(writer)
                return reply

            # 0.11 spun forever on this and stopped serving everyone.
            assert await attempt(b'PROXY TCP4 1.2', True) == b''
            assert await attempt(b'PROXY TCP4 1.2', False) == b''  # timeout
            assert await attempt(b'PROXY garbage\r\n', False) == b''
            assert await attempt(header(1) + b'fine\n', True) == b'ok fine\n'
    run(main, errors=errors)
    assert [line for _, line in seen] == [b'fine\n']  # never after failure
    assert errors == []


def test_0_11_callback_task_is_kept_and_observed() -> None:
    errors: list[dict[str, Any]] = []
    reader_obj = ProxyProtocolReader(ProxyProtocolDetect())

    async def on_connection(reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter,
                            info: SockSocketInfo) -> None:
        raise RuntimeError('callback bug')

    async def main() -> None:
        server = await asyncio.start_server(
            reader_obj.get_callback(on_connection), '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(header(1))
            assert await read_until_closed(reader) == b''
            await close(writer)
    run(main, errors=errors)
    assert [type(e.get('exception')) for e in errors] == [RuntimeError]
    assert errors[0]['task'].done()


@pytest.mark.parametrize('data, error', [
    (b'PROXY TCP4 1.2', ProxyProtocolEOFError),
    (b'\r\n\r\n\x00\r\nQUIT\n!\x11\x00\x0c\x01', ProxyProtocolEOFError),
    (b'', ProxyProtocolEOFError),
    (b'SSH-2.0-x\r\n', ProxyProtocolSyntaxError),
])
def test_reader_read_errors(data: bytes, error: type[Exception]) -> None:
    async def main() -> BaseException:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        try:
            await asyncio.wait_for(
                ProxyProtocolReader(ProxyProtocolDetect()).read(reader), WAIT)
        except ProxyProtocolError as exc:
            return exc
        raise AssertionError('no error')  # pragma: no cover
    exc = run(main)
    assert isinstance(exc, error)
    if error is ProxyProtocolEOFError:
        # 0.11 code catching IncompleteReadError still works.
        assert isinstance(exc, asyncio.IncompleteReadError)
        assert isinstance(exc, ProxyProtocolEOFError)
        assert exc.partial == data


@pytest.mark.parametrize('version', [1, 2])
def test_reader_read_leaves_the_rest(version: int) -> None:
    async def main() -> tuple[ProxyResult, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(header(version) + AFTER)
        reader.feed_eof()
        result = await ProxyProtocolReader(ProxyProtocolDetect()).read(reader)
        return result, await reader.read()
    result, rest = run(main)
    assert result.peername == CLIENT_V4 and rest == AFTER
