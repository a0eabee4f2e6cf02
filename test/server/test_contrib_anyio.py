"""anyio and trio servers behind real HAProxy (``send-proxy-v2``), with
:mod:`proxyprotocol.contrib.anyio`.

The server runs in the test's event loop, on anyio's asyncio and trio
backends and under plain ``trio.run``; HAProxy is a subprocess. The
application protocol is line based: for each line, the server answers with
one JSON line describing what the stream says about its peer.

"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import pytest

from support.certs import make_certificate
from support.haproxy import HAProxyV2, needs_haproxy
from support.net import LOOPBACKS
from contrib_support import WAIT
from proxyprotocol import build_header
from proxyprotocol.acceptor import (ProxyProtocolEOFError,
                                    ProxyProtocolRejectedError,
                                    ProxyProtocolTimeoutError)
from proxyprotocol.policy import DEFAULT_CONFIG, HeaderConfig
from proxyprotocol.sockaddr import result_from_sockaddrs

anyio = pytest.importorskip('anyio')
contrib = pytest.importorskip('proxyprotocol.contrib.anyio')
from anyio.abc import SocketAttribute  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]


def _has_trio() -> bool:
    try:
        import trio  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = [pytest.param('asyncio', id='asyncio'),
            pytest.param('trio', id='trio', marks=pytest.mark.skipif(
                not _has_trio(), reason='trio is not installed'))]

HEADER = build_header(result_from_sockaddrs(('203.0.113.7', 4321),
                                            ('198.51.100.1', 443)))


def describe(stream: Any, line: bytes) -> dict[str, Any]:
    """What the handler sees."""
    attr = contrib.ProxyProtocolAttribute
    socket_peer = stream.extra(attr.socket_remote_address)
    return {
        'line': line.decode(),
        'remote': list(stream.extra(SocketAttribute.remote_address)),
        'remote_port': stream.extra(SocketAttribute.remote_port),
        'local': list(stream.extra(SocketAttribute.local_address)),
        'socket_remote': list(socket_peer[:2]),
        'version': stream.extra(attr.info).version,
        'unique_id': stream.extra(attr.tlv).unique_id.decode(),
    }


async def handler(stream: Any) -> None:
    """Answer each line with a JSON line."""
    async with stream:
        buffer = b''
        for _ in range(1000):
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            buffer += data
            while b'\n' in buffer:
                line, buffer = buffer.split(b'\n', 1)
                await stream.send(json.dumps(describe(stream, line)).encode()
                                  + b'\n')


class LineClient:
    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffer = b''

    async def ask(self, line: bytes) -> dict[str, Any]:
        await self.stream.send(line + b'\n')
        for _ in range(1000):
            if b'\n' in self.buffer:
                break
            self.buffer += await self.stream.receive()
        answer, self.buffer = self.buffer.split(b'\n', 1)
        result: dict[str, Any] = json.loads(answer)
        return result


def serve(backend: str, client: Callable[[int], Awaitable[None]], *,
          config: HeaderConfig = DEFAULT_CONFIG,
          ssl_context: Optional[ssl.SSLContext] = None,
          on_drop: Optional[Callable[[Any, BaseException], None]] = None,
          run: Optional[Callable[..., Any]] = None) -> None:
    """Serve :func:`handler` on 127.0.0.1 behind the PROXY listener (and
    TLS), and run ``client(port)`` against it."""
    async def main() -> None:
        inner = await anyio.create_tcp_listener(local_host='127.0.0.1')
        port = inner.extra(SocketAttribute.local_port)
        listener: Any = contrib.ProxyProtocolListener(inner, config,
                                                      on_drop=on_drop)
        if ssl_context is not None:
            from anyio.streams.tls import TLSListener
            listener = TLSListener(listener, ssl_context)
        async with listener:
            async with anyio.create_task_group() as group:
                group.start_soon(listener.serve, handler)
                try:
                    with anyio.fail_after(WAIT * 2):
                        await client(port)
                finally:
                    group.cancel_scope.cancel()
    if run is not None:
        run(main)
    else:
        anyio.run(main, backend=backend)


@needs_haproxy
@pytest.mark.parametrize('front', LOOPBACKS)
@pytest.mark.parametrize('backend', BACKENDS)
def test_remote_address_is_the_original_client(
        tmp_path: Path, backend: str, front: str) -> None:
    async def client(port: int) -> None:
        haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{port}', front=front,
                            server_options='proxy-v2-options unique-id',
                            frontend_lines=['unique-id-format %ci:%cp'])
        try:
            async with await anyio.connect_tcp(front, haproxy.port) as stream:
                local = stream.extra(SocketAttribute.local_address)
                lines = LineClient(stream)
                for n in range(3):
                    seen = await lines.ask(b'ping %d' % n)
                    assert seen['line'] == f'ping {n}'
                    assert seen['remote'] == list(local[:2]), haproxy.log()
                    assert seen['remote_port'] == local[1]
                    assert seen['local'] == [front, haproxy.port]
                    assert seen['socket_remote'][0] == '127.0.0.1'
                    assert seen['socket_remote'][1] != local[1]
                    assert seen['version'] == 2
                    assert seen['unique_id'] == f'{local[0]}:{local[1]}'
        finally:
            haproxy.stop()
    serve(backend, client)


@needs_haproxy
def test_plain_trio_run(tmp_path: Path) -> None:
    trio = pytest.importorskip('trio')

    async def client(port: int) -> None:
        haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{port}')
        try:
            stream = await trio.open_tcp_stream('127.0.0.1', haproxy.port)
            async with stream:
                local = stream.socket.getsockname()
                await stream.send_all(b'hello\n')
                data = b''
                for _ in range(1000):
                    if b'\n' in data:
                        break
                    data += await stream.receive_some(65536)
                seen = json.loads(data)
                assert seen['remote'] == list(local), haproxy.log()
        finally:
            haproxy.stop()
    serve('trio', client, run=trio.run)


@needs_haproxy
@pytest.mark.parametrize('backend', BACKENDS)
def test_tls_after_the_header(tmp_path: Path, backend: str) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)

    async def client(port: int) -> None:
        # HAProxy sends the header, then a ClientHello, often in one segment.
        haproxy = HAProxyV2(tmp_path, f'127.0.0.1:{port}',
                            server_options='ssl verify none')
        try:
            async with await anyio.connect_tcp('127.0.0.1',
                                               haproxy.port) as stream:
                local = stream.extra(SocketAttribute.local_address)
                lines = LineClient(stream)
                for _ in range(2):
                    seen = await lines.ask(b'over tls')
                    assert seen['remote'] == list(local), haproxy.log()
        finally:
            haproxy.stop()
    serve(backend, client, ssl_context=context)


@pytest.mark.parametrize('backend', BACKENDS)
def test_leftover_bytes_come_first(backend: str) -> None:
    # The header and a large payload in one send: every byte after the
    # header reaches the handler, in order.
    payload = bytes(range(256)) * 1024
    received: list[bytes] = []

    async def collect(stream: Any) -> None:
        async with stream:
            chunks = []
            for _ in range(100000):
                try:
                    chunks.append(await stream.receive(1000))
                except anyio.EndOfStream:
                    break
            received.append(b''.join(chunks))

    async def main() -> None:
        inner = await anyio.create_tcp_listener(local_host='127.0.0.1')
        port = inner.extra(SocketAttribute.local_port)
        async with contrib.ProxyProtocolListener(inner) as listener:
            async with anyio.create_task_group() as group:
                group.start_soon(listener.serve, collect)
                with anyio.fail_after(WAIT):
                    async with await anyio.connect_tcp('127.0.0.1',
                                                       port) as stream:
                        await stream.send(HEADER + payload)
                        await stream.send_eof()
                    for _ in range(int(WAIT / 0.01)):
                        if received:
                            break
                        await anyio.sleep(0.01)
                group.cancel_scope.cancel()
    anyio.run(main, backend=backend)
    assert received == [payload]


@pytest.mark.parametrize('backend', BACKENDS)
def test_untrusted_peer_is_refused(backend: str) -> None:
    dropped: list[tuple[Any, BaseException]] = []

    async def client(port: int) -> None:
        for first in (b'hello\n', HEADER + b'hello\n'):
            async with await anyio.connect_tcp('127.0.0.1', port) as stream:
                local = stream.extra(SocketAttribute.local_address)
                try:
                    await stream.send(first)
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError,
                        ConnectionError):
                    data = b''
                assert data == b''
                for _ in range(int(WAIT / 0.01)):
                    if dropped and dropped[-1][0][1] == local[1]:
                        break
                    await anyio.sleep(0.01)
                assert dropped[-1][0][:2] == local[:2]
                assert isinstance(dropped[-1][1], ProxyProtocolRejectedError)
    serve(backend, client, config=HeaderConfig(trusted=['192.0.2.1']),
          on_drop=lambda peer, exc: dropped.append((peer, exc)))
    assert len(dropped) == 2


@pytest.mark.parametrize('backend', BACKENDS)
def test_receive_proxy_header_errors(backend: str) -> None:
    async def main() -> None:
        inner = await anyio.create_tcp_listener(local_host='127.0.0.1')
        port = inner.extra(SocketAttribute.local_port)
        async with inner:
            for config, send, error in (
                    (HeaderConfig(timeout=0.2), b'', ProxyProtocolTimeoutError),
                    (DEFAULT_CONFIG, HEADER[:10], ProxyProtocolEOFError)):
                async with await anyio.connect_tcp('127.0.0.1',
                                                   port) as client:
                    if send:
                        await client.send(send)
                        await client.send_eof()
                    accepted = await _accept(inner)
                    async with accepted:
                        with pytest.raises(error):
                            with anyio.fail_after(WAIT):
                                await contrib.receive_proxy_header(accepted,
                                                                   config)
    anyio.run(main, backend=backend)


async def _accept(listener: Any) -> Any:
    # One connection from a listener, without serving forever.
    accepted: list[Any] = []
    async with anyio.create_task_group() as group:
        async def take(stream: Any) -> None:
            accepted.append(stream)
            group.cancel_scope.cancel()
        group.start_soon(listener.serve, take)
    return accepted[0]


def test_proxied_stream_without_header_keeps_real_addresses() -> None:
    # Policy "ignore": no header is read; the stream reports the socket.
    async def main() -> None:
        inner = await anyio.create_tcp_listener(local_host='127.0.0.1')
        port = inner.extra(SocketAttribute.local_port)
        async with inner:
            async with await anyio.connect_tcp('127.0.0.1', port) as client:
                await client.send(b'data')
                accepted = await _accept(inner)
                async with accepted:
                    config = HeaderConfig(trusted=(), untrusted_policy='ignore')
                    proxied = await contrib.receive_proxy_header(accepted,
                                                                 config)
                    assert proxied.info.header is None
                    assert proxied.extra(SocketAttribute.remote_address) == \
                        client.extra(SocketAttribute.local_address)
                    assert await proxied.receive() == b'data'
                    assert proxied.transport_stream is accepted
    anyio.run(main)
