"""asyncio protocols: ``wrap_protocol_factory`` over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Optional

import pytest

from support.loops import LOOPS, run
from adapter_support import (CLIENT_V4, KINDS, SERVICE_V4, WAIT, close, header,
                             read_until_closed, serve)
from proxyprotocol.acceptor import ConnectionInfo
from proxyprotocol.aio import ProxiedTransport, wrap_protocol_factory
from proxyprotocol.header import ParsedHeader
from proxyprotocol.policy import HeaderConfig
from proxyprotocol.result import ProxyResultIPv4
from proxyprotocol.tlv import ProxyProtocolTLV

pytestmark = pytest.mark.timeout(90)


class Recorder(asyncio.Protocol):
    """Records what the application sees; replies to lines it is told."""

    instances: list[Recorder]

    def __init__(self, pause_on_connect: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Optional[ProxiedTransport] = None
        self.data = bytearray()
        self.events: list[str] = []
        self.eof = False
        self.lost: asyncio.Future[Optional[Exception]] = loop.create_future()
        self.received = asyncio.Event()
        self.pause_on_connect = pause_on_connect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, ProxiedTransport)
        self.transport = transport
        self.events.append('made')
        if self.pause_on_connect:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.events.append('data')
        self.data += data
        self.received.set()

    def eof_received(self) -> Optional[bool]:
        self.events.append('eof')
        self.eof = True
        assert self.transport is not None
        self.transport.write(b'got ' + bytes(self.data))
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.events.append('lost')
        if not self.lost.done():
            self.lost.set_result(exc)


class BufferedRecorder(asyncio.BufferedProtocol):
    """A BufferedProtocol with a deliberately small buffer."""

    def __init__(self, size: int = 3) -> None:
        self.buffer = bytearray(size)
        self.data = bytearray()
        self.calls = 0
        self.transport: Optional[asyncio.BaseTransport] = None
        self.eof = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.calls += 1
        self.data += self.buffer[:nbytes]

    def eof_received(self) -> Optional[bool]:
        if not self.eof.done():
            self.eof.set_result(bytes(self.data))
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(b'buffered ' + bytes(self.data))
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.eof.done():
            self.eof.set_result(bytes(self.data))


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('kind', KINDS)
def test_app_starts_after_the_header(kind: str, loop_kind: str) -> None:
    apps: list[Recorder] = []

    def factory() -> Recorder:
        app = Recorder()
        apps.append(app)
        return app

    async def main() -> None:
        async with serve(kind, wrap_protocol_factory(factory)) as listener:
            reader, writer = await listener.open()
            local = writer.get_extra_info('sockname')
            data = header(2, tlv=ProxyProtocolTLV(unique_id=b'u1'))
            writer.write(data[:10])
            await writer.drain()
            await asyncio.sleep(0.1)
            assert apps == []  # no application before the whole header
            writer.write(data[10:] + b'first bytes')
            writer.write_eof()
            reply = await read_until_closed(reader)
            await close(writer)
            assert reply == b'got first bytes'
            app = apps[0]
            await asyncio.wait_for(app.lost, WAIT)
            assert app.events[0] == 'made' and app.events[-2:] == \
                ['eof', 'lost']
            transport = app.transport
            assert transport is not None
            info = transport.get_extra_info('proxy_info')
            assert isinstance(info, ConnectionInfo)
            assert transport.info is info
            assert transport.get_extra_info('peername') == CLIENT_V4
            assert transport.get_extra_info('sockname') == SERVICE_V4
            assert isinstance(transport.get_extra_info('proxy_result'),
                              ProxyResultIPv4)
            assert isinstance(transport.get_extra_info('proxy_header'),
                              ParsedHeader)
            assert transport.get_extra_info('proxy_tlv').unique_id == b'u1'
            if kind != 'unix':
                assert transport.get_extra_info(
                    'socket_peername')[:2] == local[:2]
            assert transport.get_extra_info('socket_sockname') \
                == info.socket_sockname
            assert transport.get_extra_info('no such key', 7) == 7
    run(main, loop_kind)


@pytest.mark.parametrize('loop_kind', LOOPS)
def test_buffered_protocol_gets_the_trailing_bytes(loop_kind: str) -> None:
    apps: list[BufferedRecorder] = []

    def factory() -> BufferedRecorder:
        app = BufferedRecorder(size=3)
        apps.append(app)
        return app

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(factory)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1) + b'abcdefgh')
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b'-later')
            writer.write_eof()
            reply = await read_until_closed(reader)
            await close(writer)
            assert reply == b'buffered abcdefgh-later'
            assert apps[0].calls >= 5  # 3-byte buffers: many calls
    run(main, loop_kind)


def test_set_protocol_upgrade() -> None:
    upgraded: list[BufferedRecorder] = []

    class Upgrading(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            assert data == b'UPGRADE\n'
            new = BufferedRecorder(size=64)
            new.connection_made(self.transport)
            upgraded.append(new)
            self.transport.set_protocol(new)
            assert self.transport.get_protocol() is new
            self.transport.write(b'OK\n')

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(Upgrading)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1) + b'UPGRADE\n')
            assert await asyncio.wait_for(reader.readline(), WAIT) == b'OK\n'
            writer.write(b'websocket frames')
            writer.write_eof()
            assert await read_until_closed(reader) == \
                b'buffered websocket frames'
            await close(writer)
    run(main)
    assert bytes(upgraded[0].data) == b'websocket frames'


def test_pause_reading_holds_the_trailing_bytes() -> None:
    apps: list[Recorder] = []

    def factory() -> Recorder:
        app = Recorder(pause_on_connect=True)
        apps.append(app)
        return app

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(factory)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1) + b'held back')
            for _ in range(100):
                if apps:
                    break
                await asyncio.sleep(0.01)
            app = apps[0]
            await asyncio.sleep(0.1)
            assert app.events == ['made']  # paused: nothing delivered
            assert app.transport is not None
            assert not app.transport.is_reading()
            app.transport.resume_reading()
            assert app.transport.is_reading()
            await asyncio.wait_for(app.received.wait(), WAIT)
            assert bytes(app.data) == b'held back'
            writer.write_eof()
            assert await read_until_closed(reader) == b'got held back'
            await close(writer)
    run(main)


def test_transport_operations_pass_through() -> None:
    results: dict[str, Any] = {}

    class App(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, ProxiedTransport)
            transport.set_write_buffer_limits(high=1 << 20)
            results['limits'] = transport.get_write_buffer_limits()
            results['size'] = transport.get_write_buffer_size()
            results['can_write_eof'] = transport.can_write_eof()
            results['socket'] = transport.get_extra_info('socket')
            results['repr'] = repr(transport)
            transport.writelines([b'a', b'b', b'c'])
            transport.write_eof()
            assert not transport.is_closing()
            transport.close()
            assert transport.is_closing()
            transport.write(b'ignored after close')

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(App)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1))
            assert await read_until_closed(reader) == b'abc'
            await close(writer)
    run(main)
    assert results['limits'][1] == 1 << 20
    assert results['size'] == 0
    assert results['can_write_eof'] is True
    assert results['socket'] is not None
    assert '203.0.113.7' in results['repr']


def test_abort_and_connection_lost() -> None:
    lost: list[Optional[Exception]] = []

    class App(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.abort()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            lost.append(exc)

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(App)) as lst:
            reader, writer = await lst.open()
            writer.write(header(2))
            assert await read_until_closed(reader) == b''
            await close(writer)
            for _ in range(100):
                if lost:
                    break
                await asyncio.sleep(0.01)
    run(main)
    assert lost == [None]


def test_write_type_is_checked() -> None:
    errors: list[BaseException] = []

    class App(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.WriteTransport)
            try:
                transport.write('text')  # type: ignore[arg-type]
            except TypeError as exc:
                errors.append(exc)
            transport.close()

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(App)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1))
            await read_until_closed(reader)
            await close(writer)
    run(main)
    assert len(errors) == 1


def test_ignored_header_is_application_data() -> None:
    apps: list[Recorder] = []

    def factory() -> Recorder:
        app = Recorder()
        apps.append(app)
        return app

    async def main() -> None:
        config = HeaderConfig(trusted_policy='ignore')
        factory_ = wrap_protocol_factory(factory, config)
        async with serve('ipv4', factory_) as lst:
            reader, writer = await lst.open()
            local = writer.get_extra_info('sockname')
            writer.write(header(1))
            writer.write_eof()
            reply = await read_until_closed(reader)
            await close(writer)
            assert reply == b'got ' + header(1)
            transport = apps[0].transport
            assert transport is not None
            assert transport.get_extra_info('peername')[:2] == local[:2]
            assert transport.get_extra_info('proxy_result') is None
            assert not transport.get_extra_info('proxy_tlv')
    run(main)


def test_rejects_non_ssl_context() -> None:
    with pytest.raises(TypeError):
        wrap_protocol_factory(Recorder, ssl=object())  # type: ignore


def test_unix_peer_real_address_is_kept() -> None:
    if not hasattr(socket, 'AF_UNIX'):
        pytest.skip('no UNIX sockets')
    apps: list[Recorder] = []

    def factory() -> Recorder:
        app = Recorder()
        apps.append(app)
        return app

    async def main() -> None:
        async with serve('unix', wrap_protocol_factory(factory)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1) + b'x')
            writer.write_eof()
            assert await read_until_closed(reader) == b'got x'
            await close(writer)
    run(main)
    transport = apps[0].transport
    assert transport is not None
    info = transport.info
    assert info.socket_family == socket.AF_UNIX
    assert info.peername == CLIENT_V4 and info.family == socket.AF_INET


def test_end_of_stream_waits_for_held_bytes() -> None:
    apps: list[Recorder] = []

    def factory() -> Recorder:
        app = Recorder(pause_on_connect=True)
        apps.append(app)
        return app

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(factory)) as lst:
            reader, writer = await lst.open()
            writer.write(header(2) + b'before the end')
            writer.write_eof()
            for _ in range(100):
                if apps:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            app = apps[0]
            assert app.events == ['made']
            assert app.transport is not None
            app.transport.resume_reading()
            assert await read_until_closed(reader) == b'got before the end'
            await close(writer)
            await asyncio.wait_for(app.lost, WAIT)
            assert app.events == ['made', 'data', 'eof', 'lost']
    run(main)


def test_write_flow_control_reaches_the_application() -> None:
    events: list[str] = []
    big = b'x' * (8 << 20)

    class Writer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.set_write_buffer_limits(high=4096, low=1024)
            transport.write(big)
            transport.write_eof()

        def pause_writing(self) -> None:
            events.append('pause')

        def resume_writing(self) -> None:
            events.append('resume')

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(Writer)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1))
            received = 0
            while True:
                chunk = await asyncio.wait_for(reader.read(1 << 16), WAIT)
                if not chunk:
                    break
                received += len(chunk)
            await close(writer)
            assert received == len(big)
    run(main)
    assert events[:2] == ['pause', 'resume']


def test_no_data_after_the_application_closes() -> None:
    received: list[bytes] = []

    class Closer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.close()

        def data_received(self, data: bytes) -> None:
            received.append(data)

    async def main() -> None:
        async with serve('ipv4', wrap_protocol_factory(Closer)) as lst:
            reader, writer = await lst.open()
            writer.write(header(1) + b'too late')
            assert await read_until_closed(reader) == b''
            await close(writer)
    run(main)
    assert received == []


class SocketProbe(asyncio.Protocol):
    """Reads the ``'socket'`` and ``'socket_real'`` extra info while the
    connection is open, then closes it."""

    def __init__(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        view = transport.get_extra_info('socket')
        real = transport.get_extra_info('socket_real')
        seen = self.seen
        seen['view'], seen['real'] = view, real
        seen['same'] = transport.get_extra_info('socket') is view
        seen['view_peer'] = view.getpeername()
        seen['view_local'] = view.getsockname()
        seen['view_family'] = view.family
        seen['real_peer'] = real.getpeername()
        seen['real_family'] = real.family
        seen['fileno'] = (view.fileno(), real.fileno())
        seen['type'] = view.type
        # What the view does not define is the real socket's.
        seen['timeout'] = (view.gettimeout(), real.gettimeout())
        if real.family != socket.AF_UNIX:
            # Options go to the real socket, through the view.
            view.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            view.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            seen['nodelay'] = real.getsockopt(socket.IPPROTO_TCP,
                                              socket.TCP_NODELAY)
            seen['nodelay_view'] = view.getsockopt(socket.IPPROTO_TCP,
                                                   socket.TCP_NODELAY)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b'seen')
        transport.close()


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('kind', KINDS)
def test_socket_extra_info_names_the_proxied_client(kind: str,
                                                    loop_kind: str) -> None:
    """``get_extra_info('socket').getpeername()`` (what uvicorn reads) is the
    client of the header; ``'socket_real'`` is the connection's socket."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        factory = wrap_protocol_factory(lambda: SocketProbe(seen))
        async with serve(kind, factory) as listener:
            reader, writer = await listener.open()
            client_end = writer.get_extra_info('sockname')
            writer.write(header(2))
            assert await read_until_closed(reader) == b'seen'
            await close(writer)
            seen['client_end'] = client_end
    run(main, loop_kind)
    assert seen['view'] is not seen['real'] and seen['same']
    assert seen['view_peer'] == CLIENT_V4
    assert seen['view_local'] == SERVICE_V4
    assert seen['view_family'] == socket.AF_INET
    assert seen['type'] == socket.SOCK_STREAM
    view_fd, real_fd = seen['fileno']
    assert view_fd == real_fd and real_fd >= 0
    assert seen['timeout'][0] == seen['timeout'][1]
    if kind == 'unix':
        assert seen['real_family'] == socket.AF_UNIX
        assert seen['real_peer'] in ('', None, b'')  # an unnamed client
    else:
        assert seen['real_peer'][:2] == seen['client_end'][:2]
        assert seen['real_peer'][:2] != CLIENT_V4
        assert seen['nodelay'] and seen['nodelay_view']
    assert 'ProxiedSocket' in repr(seen['view'])
    assert '203.0.113.7' in repr(seen['view'])


@pytest.mark.parametrize('data, policy', [
    (b'', 'ignore'),                                           # no header
    (b'PROXY UNKNOWN\r\n', 'require'),                         # UNKNOWN
])
def test_socket_extra_info_is_the_real_socket_without_addresses(
        data: bytes, policy: str) -> None:
    """Without addresses from a header, ``'socket'`` is the real socket,
    as ``'socket_real'`` is."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        factory = wrap_protocol_factory(
            lambda: SocketProbe(seen), HeaderConfig(trusted_policy=policy))
        async with serve('ipv4', factory) as listener:
            reader, writer = await listener.open()
            seen['client_end'] = writer.get_extra_info('sockname')
            writer.write(data)
            assert await read_until_closed(reader) == b'seen'
            await close(writer)
    run(main)
    assert seen['view'] is seen['real']
    assert seen['view_peer'][:2] == seen['client_end'][:2]


def test_socket_view_is_also_the_contrib_name() -> None:
    from proxyprotocol.aio.sockview import ProxiedSocket
    from proxyprotocol.contrib import ProxiedSocket as contrib_view
    from proxyprotocol.contrib._common import ProxiedSocket as common_view
    assert contrib_view is ProxiedSocket and common_view is ProxiedSocket
