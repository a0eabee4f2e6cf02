"""The proxy server's engine, in process: the header it sends, the relay
(data, half-close, backpressure, splice), timeouts, the connection limit,
graceful drain, TLS on either side, chained proxies, and the 0.4/0.11
asyncio protocols.

Each test runs a :class:`~proxyprotocol.server.service.ProxyServer` in its
own event loop (asyncio and uvloop; the epoll poller and the portable
loop poller) in front of a backend that records the header it receives.

"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import ssl
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, Optional, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxyprotocol import (ParsedHeader, build_header, parse_header,
                           result_from_sockaddrs)
from proxyprotocol.aio import start_server as pp_start_server
from proxyprotocol.policy import HeaderConfig
from proxyprotocol.result import ProxyResultIPv4, ProxyResultUnknown
from proxyprotocol.server import Address, Client, Server
from proxyprotocol.server.headers import HeaderFactory, TLSFacts
from proxyprotocol.server.protocol import (DownstreamProtocol,
                                           UpstreamProtocol)
from proxyprotocol.server.relay import RELAYING
from proxyprotocol.server.service import ServiceOptions
from proxyprotocol.server.tlsinfo import cert_summary
from proxyprotocol.tlv import ProxyProtocolTLV
from proxyprotocol.v2 import ProxyProtocolV2

from support.certs import make_cert_files
from support.loops import LOOPS, run
from support.net import needs_ipv6
from peers import (WAIT, Recorder, aconnect, ended, read_all, running_proxy,
                   service_address)

pytestmark = pytest.mark.timeout(120)

POLLERS = [pytest.param('epoll', id='epoll'),
           pytest.param('loop', id='looppoller')]


async def _roundtrip(address: Any, payload: bytes) -> bytes:
    """Send ``payload``, half-close, read to the end; a connection the
    proxy closed or reset gives what arrived before (usually ``b''``)."""
    try:
        reader, writer = await aconnect(address)
    except ConnectionError:
        return b''
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await read_all(reader)
    except ConnectionError:
        return b''
    finally:
        writer.close()


# -- the header -----------------------------------------------------------------

@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('poller', POLLERS)
def test_v2_header_names_the_client(loop_kind: str, poller: str) -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest + '?pp=v2',
                                 poller=poller) as (_, service):
            address = service_address(service)
            reader, writer = await aconnect(address)
            client = writer.get_extra_info('sockname')
            writer.write(b'hello')
            writer.write_eof()
            assert await read_all(reader) == b'hello'
            writer.close()
            parsed, = await backend.wait_headers()
        await backend.close()
        assert parsed.version == 2
        result = parsed.result
        assert isinstance(result, ProxyResultIPv4)
        assert result.source == (IPv4Address(client[0]), client[1])
        assert result.dest == (IPv4Address(address[0]), address[1])
        assert result.protocol == socket.SOCK_STREAM
        # The defaults: a 16-byte UNIQUE_ID and a CRC32C (checked by the
        # parser).
        assert len(result.tlv.unique_id) == 16
        assert result.tlv.crc32c is not None
    run(main, loop_kind)


def test_v1_header_and_tlv_none() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest + '?pp=v1') \
                as (_, service):
            assert await _roundtrip(service_address(service), b'x') == b'x'
        async with running_proxy('127.0.0.1:0', dest + '?pp=v2&tlv=none') \
                as (_, service):
            assert await _roundtrip(service_address(service), b'y') == b'y'
        v1, v2 = await backend.wait_headers(2)
        await backend.close()
        assert v1.version == 1 and isinstance(v1.result, ProxyResultIPv4)
        assert str(v1.result.source_ip) == '127.0.0.1'
        assert v2.version == 2 and not v2.result.tlv
    run(main)


def test_legacy_default_version_and_detect() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        # 0.4: "detect" on the command line meant v1; ?pp=detect means v2.
        options = ServiceOptions(default_version=1)
        async with running_proxy('127.0.0.1:0', dest,
                                 options=options) as (_, service):
            await _roundtrip(service_address(service), b'x')
        async with running_proxy('127.0.0.1:0', dest + '?pp=detect',
                                 options=options) as (_, service):
            await _roundtrip(service_address(service), b'x')
        first, second = await backend.wait_headers(2)
        await backend.close()
        assert (first.version, second.version) == (1, 2)
    run(main)


def test_noop_sends_no_header() -> None:
    async def main() -> None:
        async def echo(reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read())
            writer.close()
        backend = await asyncio.start_server(echo, '127.0.0.1', 0)
        port = backend.sockets[0].getsockname()[1]
        async with running_proxy('127.0.0.1:0', f'127.0.0.1:{port}?pp=noop'
                                 ) as (_, service):
            data = await _roundtrip(service_address(service), b'plain')
        backend.close()
        assert data == b'plain'
    run(main)


@needs_ipv6
@pytest.mark.parametrize('version', [1, 2])
def test_ipv6_client(version: int) -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start('::1')
        async with running_proxy('[::1]:0', f'{dest}?pp=v{version}') \
                as (_, service):
            address = service_address(service)
            reader, writer = await aconnect(address)
            client = writer.get_extra_info('sockname')
            writer.write_eof()
            await read_all(reader)
            writer.close()
            parsed, = await backend.wait_headers()
        await backend.close()
        assert parsed.result.source == (IPv6Address('::1'), client[1])
        assert parsed.result.dest == (IPv6Address('::1'), address[1])
    run(main)


def test_unix_listener_and_unix_destination(tmp_path: Path) -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start(f'unix:{tmp_path}/backend.sock')
        listen = f'unix:{tmp_path}/proxy.sock'
        async with running_proxy(listen, dest + '?pp=v2&tlv=none') \
                as (_, service):
            assert await _roundtrip(f'{tmp_path}/proxy.sock', b'u') == b'u'
        async with running_proxy(listen, dest + '?pp=v1') as (_, service):
            assert await _roundtrip(f'{tmp_path}/proxy.sock', b'v') == b'v'
        # The socket file is removed at shutdown.
        assert not os.path.exists(f'{tmp_path}/proxy.sock')
        v2, v1 = await backend.wait_headers(2)
        await backend.close()
        assert v2.result.type.name == 'UNIX'
        assert v2.result.dest == f'{tmp_path}/proxy.sock'
        # v1 cannot carry UNIX addresses: UNKNOWN, as HAProxy sends.
        assert isinstance(v1.result, ProxyResultUnknown)
    run(main)


def test_tcp_client_to_unix_destination(tmp_path: Path) -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start(f'unix:{tmp_path}/b.sock')
        async with running_proxy('127.0.0.1:0', dest + '?pp=v1') \
                as (_, service):
            assert await _roundtrip(service_address(service), b'w') == b'w'
        parsed, = await backend.wait_headers()
        await backend.close()
        assert isinstance(parsed.result, ProxyResultIPv4)
        assert str(parsed.result.source_ip) == '127.0.0.1'
    run(main)


# -- relaying ---------------------------------------------------------------------

@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('poller', POLLERS)
@pytest.mark.parametrize('splice', [True, False], ids=['splice', 'copy'])
def test_large_transfer_both_ways(loop_kind: str, poller: str, splice: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyprotocol.server import relay as relay_module
    if not splice:
        monkeypatch.setattr(relay_module, '_splice_ok', False)
    payload = os.urandom(8 << 20)

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest, poller=poller) \
                as (server, service):
            reader, writer = await aconnect(service_address(service))

            async def send() -> None:
                view = memoryview(payload)
                for offset in range(0, len(payload), 1 << 20):
                    writer.write(view[offset:offset + (1 << 20)])
                    await writer.drain()
                writer.write_eof()
            sender = asyncio.ensure_future(send())
            echoed = await read_all(reader)
            await sender
            writer.close()
        await backend.close()
        assert hashlib.sha256(echoed).digest() == \
            hashlib.sha256(payload).digest()
        assert backend.received == [payload]
    run(main, loop_kind)


@pytest.mark.parametrize('poller', POLLERS)
def test_half_close_from_the_destination(poller: str) -> None:
    """The destination ends its side first; the client's side stays open
    and its bytes still arrive."""
    got: list[bytes] = []

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
            # Skip the header (a v1 line), say goodbye, half-close, and go
            # on reading.
            await reader.readline()
            writer.write(b'bye')
            writer.write_eof()
            got.append(await reader.read())
            writer.close()
        backend = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = backend.sockets[0].getsockname()[1]
        async with running_proxy('127.0.0.1:0', f'127.0.0.1:{port}?pp=v1',
                                 poller=poller) as (_, service):
            reader, writer = await aconnect(service_address(service))
            assert await read_all(reader) == b'bye'
            writer.write(b'still here')
            writer.write_eof()
            await asyncio.sleep(0)
            await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
        backend.close()
    run(main)
    assert got == [b'still here']


@pytest.mark.parametrize('poller', POLLERS)
@pytest.mark.parametrize('splice', [True, False], ids=['splice', 'copy'])
def test_backpressure_bounds_what_the_proxy_holds(
        poller: str, splice: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A destination that does not read: the proxy stops reading the
    client, holding at most one read (buf_len) per direction."""
    from proxyprotocol.server import relay as relay_module
    if not splice:
        monkeypatch.setattr(relay_module, '_splice_ok', False)

    async def main() -> None:
        release = asyncio.Event()

        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            await release.wait()
            while await reader.read(1 << 20):
                pass
            writer.close()
        backend = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = backend.sockets[0].getsockname()[1]
        async with running_proxy('127.0.0.1:0', f'127.0.0.1:{port}?pp=v1',
                                 poller=poller) as (server, service):
            host, port = cast(tuple[str, int], service_address(service))
            sock = socket.create_connection((host, port))
            sock.setblocking(False)
            chunk = b'z' * (1 << 20)
            sent = 0
            loop = asyncio.get_running_loop()
            stalled = 0
            # Write until the proxy stops taking bytes (bounded: 256 MiB).
            while sent < (256 << 20) and stalled < 20:
                try:
                    sent += sock.send(chunk)
                    stalled = 0
                except BlockingIOError:
                    stalled += 1
                    await asyncio.sleep(0.05)
            assert sent < (256 << 20), 'the proxy never pushed back'
            relay, = server.relays
            assert relay.state == RELAYING
            assert relay.up is not None
            assert len(relay.up.pending or b'') <= 65536
            release.set()
            sock.shutdown(socket.SHUT_WR)
            await loop.run_in_executor(None, lambda: None)
            sock.close()
        backend.close()
    run(main)


def test_destination_down_closes_the_client(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, 'proxyprotocol.server')

    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        async with running_proxy('127.0.0.1:0', f'127.0.0.1:{port}') \
                as (server, service):
            assert await _roundtrip(service_address(service), b'x') == b''
            assert server.stats['connect_failed'] == 1
    run(main)
    assert 'cannot connect to 127.0.0.1:' in caplog.text


def test_next_destination_address_after_a_refusal() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            closed = probe.getsockname()[1]
        async with running_proxy('127.0.0.1:0', dest) as (_, service):
            good = service.destination_addresses[0]
            service.destination_addresses = [
                (socket.AF_INET, ('127.0.0.1', closed)), good]
            assert await _roundtrip(service_address(service), b'z') == b'z'
        await backend.close()
    run(main)


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('poller', POLLERS)
def test_abrupt_endings_leave_nothing_behind(loop_kind: str,
                                             poller: str) -> None:
    """Clients that reset, vanish or half-close at random moments, many at
    once: every relay ends, every descriptor is closed."""
    def fds() -> int:
        return len(os.listdir('/proc/self/fd'))

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest, poller=poller) \
                as (server, service):
            address = service_address(service)
            await _roundtrip(address, b'warm up')
            baseline = fds()

            async def client(number: int) -> None:
                kind = number % 5
                reader, writer = await aconnect(address)
                sock = writer.get_extra_info('socket')
                try:
                    if kind == 0:       # a normal exchange
                        writer.write(b'x' * 100000)
                        writer.write_eof()
                        await asyncio.wait_for(reader.read(), WAIT)
                    elif kind == 1:     # gone without a word
                        pass
                    elif kind == 2:     # a reset in the middle
                        writer.write(b'y' * 200000)
                        await writer.drain()
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        b'\x01\x00\x00\x00\x00\x00\x00\x00')
                    elif kind == 3:     # sends, never reads, closes
                        writer.write(os.urandom(300000))
                        await asyncio.sleep(0.01)
                    else:               # half-close, then close early
                        writer.write(b'z' * 1000)
                        writer.write_eof()
                        await asyncio.sleep(0)
                except ConnectionError:
                    pass
                finally:
                    writer.close()
            await asyncio.gather(*(client(n) for n in range(200)))
            for _ in range(200):
                if not server.relays and fds() <= baseline:
                    break
                await asyncio.sleep(0.05)
            assert not server.relays
            # The backend's own sockets close a moment later; bounded.
            assert fds() <= baseline
        await backend.close()
    run(main, loop_kind)


# -- timeouts, limits, draining ------------------------------------------------

def test_connect_timeout() -> None:
    async def main() -> None:
        # A destination whose accept queue is full: the SYN goes unanswered.
        full = socket.socket()
        full.bind(('127.0.0.1', 0))
        full.listen(0)
        filler = socket.create_connection(full.getsockname())
        port = full.getsockname()[1]
        try:
            async with running_proxy(
                    '127.0.0.1:0', f'127.0.0.1:{port}',
                    options=ServiceOptions(connect_timeout=0.3)) \
                    as (server, service):
                reader, writer = await aconnect(service_address(service))
                assert await ended(reader) == b''
                writer.close()
                assert server.stats['timed_out'] == 1
        finally:
            filler.close()
            full.close()
    run(main)


def test_idle_timeout() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest, idle_timeout=0.3) \
                as (server, service):
            reader, writer = await aconnect(service_address(service))
            await backend.wait_headers()
            # Nothing moves: the proxy closes the connection.
            assert await ended(reader) == b''
            writer.close()
            assert not server.relays
        await backend.close()
    run(main)


def test_connection_limit_waits_in_the_backlog() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest, max_connections=1) \
                as (server, service):
            address = service_address(service)
            _, first = await aconnect(address)
            await backend.wait_headers(1)
            reader2, second = await aconnect(address)
            await asyncio.sleep(0.3)
            assert len(backend.headers) == 1 and server.full
            first.close()
            await backend.wait_headers(2)
            second.write_eof()
            await read_all(reader2)
            second.close()
        await backend.close()
    run(main)


def test_graceful_drain() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest) as (server, service):
            address = service_address(service)
            reader, writer = await aconnect(address)
            writer.write(b'before')
            assert await asyncio.wait_for(reader.readexactly(6), WAIT) == \
                b'before'
            drain = asyncio.ensure_future(server.shutdown(WAIT))
            await asyncio.sleep(0.1)
            # No new connections, but the open one goes on.
            with pytest.raises(OSError):
                await aconnect(address)
            writer.write(b'after')
            assert await asyncio.wait_for(reader.readexactly(5), WAIT) == \
                b'after'
            assert not drain.done()
            writer.write_eof()
            assert await read_all(reader) == b''
            writer.close()
            await asyncio.wait_for(drain, WAIT)
        await backend.close()
    run(main)


def test_drain_timeout_resets_what_is_left() -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy('127.0.0.1:0', dest) as (server, service):
            reader, writer = await aconnect(service_address(service))
            await backend.wait_headers()
            await asyncio.wait_for(server.shutdown(0.2), WAIT)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
        await backend.close()
    run(main)


def test_several_services_share_a_server() -> None:
    async def main() -> None:
        one, two = Recorder(), Recorder()
        dest1, dest2 = await one.start(), await two.start()
        async with running_proxy('127.0.0.1:0', dest1 + '?pp=v1') \
                as (server, service1):
            service2 = server.add(Address('127.0.0.1:0', server=True),
                                  Address(dest2 + '?pp=v2'),
                                  ServiceOptions())
            service2.bind()
            service2.start_accepting()
            assert await _roundtrip(service_address(service1), b'1') == b'1'
            assert await _roundtrip(service_address(service2), b'2') == b'2'
        assert (await one.wait_headers())[0].version == 1
        assert (await two.wait_headers())[0].version == 2
        await one.close()
        await two.close()
    run(main)


# -- chained proxies: a header on the inbound side ------------------------------

CLAIMED = ('203.0.113.7', 4321)
SERVICE = ('198.51.100.1', 443)


@pytest.mark.parametrize('poller', POLLERS)
@pytest.mark.parametrize('version', [1, 2])
def test_chained_passes_the_original_client_on(poller: str,
                                               version: int) -> None:
    tlv = ProxyProtocolTLV(authority='app.example', unique_id=b'front-1')
    inbound = build_header(result_from_sockaddrs(
        CLAIMED, SERVICE, protocol=socket.SOCK_STREAM,
        tlv=tlv if version == 2 else ProxyProtocolTLV()),
        version=version, crc32c=True)

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy(f'127.0.0.1:0?pp=v{version}', dest,
                                 poller=poller) as (_, service):
            data = await _roundtrip(service_address(service),
                                    inbound + b'payload')
            assert data == b'payload'
        parsed, = await backend.wait_headers()
        await backend.close()
        result = parsed.result
        assert result.source == (ip_address(CLAIMED[0]), CLAIMED[1])
        assert result.dest == (ip_address(SERVICE[0]), SERVICE[1])
        if version == 2:
            # Passed on, the UNIQUE_ID kept; the CRC32C computed again.
            assert result.tlv.authority == 'app.example'
            assert result.tlv.unique_id == b'front-1'
        else:
            assert len(result.tlv.unique_id) == 16
        assert result.tlv.crc32c is not None
    run(main)


def test_chained_policy_and_bad_headers(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, 'proxyprotocol.server')
    good = build_header(result_from_sockaddrs(CLAIMED, SERVICE), version=1)

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        # Untrusted peers are refused...
        async with running_proxy('127.0.0.1:0?pp=v1&trusted=10.0.0.0/8',
                                 dest) as (server, service):
            assert await _roundtrip(service_address(service), good) == b''
            assert server.stats['refused'] == 1
        # ...or served as themselves.
        async with running_proxy(
                '127.0.0.1:0?pp=v1&trusted=10.0.0.0/8&untrusted=ignore',
                dest) as (server, service):
            assert await _roundtrip(service_address(service), b'raw') == \
                b'raw'
        # Garbage, a truncated header and a timeout are dropped while a
        # good client is served.
        async with running_proxy(
                '127.0.0.1:0?pp=detect', dest,
                options=ServiceOptions(header_timeout=0.3)) \
                as (server, service):
            address = service_address(service)
            silent_reader, silent = await aconnect(address)
            assert await _roundtrip(address, b'GET / HTTP/1.0\r\n\r\n') \
                == b''
            assert await _roundtrip(address, good[:10]) == b''
            assert await _roundtrip(address, good + b'ok') == b'ok'
            assert await ended(silent_reader) == b''
            silent.close()
            assert server.stats['refused'] == 3
        headers = await backend.wait_headers(2)
        await backend.close()
        assert isinstance(headers[0].result, ProxyResultIPv4)
        assert str(headers[0].result.source_ip) == '127.0.0.1'
        assert headers[1].result.source == (ip_address(CLAIMED[0]),
                                            CLAIMED[1])
    run(main)
    assert 'dropped at the header' in caplog.text


class _Dnsbl:
    """A DNSBL stand-in: lists 127.0.0.1, or fails."""

    timeout = 1.0

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[Any] = []

    async def lookup(self, sock_info: Any) -> Optional[str]:
        self.asked.append(sock_info.peername_ip)
        if self.fail:
            raise OSError('resolver down')
        return 'listed.example'


@pytest.mark.parametrize('fail', [False, True])
def test_dnsbl_verdict_in_the_header(fail: bool) -> None:
    dnsbl = _Dnsbl(fail)

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        options = ServiceOptions(dnsbl=dnsbl)   # type: ignore[arg-type]
        async with running_proxy('127.0.0.1:0', dest, options=options) \
                as (_, service):
            assert await _roundtrip(service_address(service), b'd') == b'd'
        parsed, = await backend.wait_headers()
        await backend.close()
        assert parsed.result.tlv.ext.dnsbl == (None if fail
                                               else 'listed.example')
    run(main)
    assert [str(ip) for ip in dnsbl.asked] == ['127.0.0.1']


# -- TLS --------------------------------------------------------------------------

@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('client_cert', [True, False])
def test_tls_termination_sends_the_ssl_tlvs(tmp_path: Path, loop_kind: str,
                                            client_cert: bool) -> None:
    certs = make_cert_files(tmp_path)
    listen = (f'ssl://127.0.0.1:0?cert={certs.server_pem}'
              f'&key={certs.server_key}&alpn=h2,http/1.1'
              f'&verify=CERT_OPTIONAL&cafile={certs.ca_pem}')

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy(listen, dest) as (_, service):
            host, port = cast(tuple[str, int], service_address(service))
            ctx = certs.client_context(client_cert)
            ctx.set_alpn_protocols(['h2'])
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=ctx, server_hostname='localhost'), WAIT)
            writer.write(b'secret')
            assert await asyncio.wait_for(reader.readexactly(6), WAIT) == \
                b'secret'
            writer.close()
            parsed, = await backend.wait_headers()
        await backend.close()
        tlv = parsed.result.tlv
        assert tlv.alpn == b'h2'
        assert tlv.authority == 'localhost'
        assert tlv.ssl.has_ssl
        assert tlv.ssl.version in ('TLSv1.2', 'TLSv1.3')
        assert tlv.ssl.cipher
        assert tlv.ssl.sig_alg == 'ecdsa-with-SHA256'
        assert tlv.ssl.key_alg == 'EC256'
        assert tlv.ssl.has_cert_conn is client_cert
        assert tlv.ssl.verified is client_cert
        assert tlv.ssl.cn == ('client.example' if client_cert else None)
        assert tlv.crc32c is not None
    run(main, loop_kind)


def test_tls_handshake_failure_is_dropped(tmp_path: Path) -> None:
    certs = make_cert_files(tmp_path)
    listen = (f'ssl://127.0.0.1:0?cert={certs.server_pem}'
              f'&key={certs.server_key}')

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        async with running_proxy(listen, dest) as (server, service):
            address = service_address(service)
            # Not TLS at all.
            assert await _roundtrip(address, b'GET / HTTP/1.0\r\n\r\n') \
                == b''
            # TLS from a client that does not trust the certificate.
            with pytest.raises(ssl.SSLError):
                await asyncio.wait_for(asyncio.open_connection(
                    *address, ssl=ssl.create_default_context(),
                    server_hostname='localhost'), WAIT)
            await asyncio.sleep(0.1)
            assert server.stats['refused'] >= 1
        await backend.close()
        assert not backend.headers
    run(main)


@pytest.mark.parametrize('loop_kind', LOOPS)
def test_tls_towards_the_destination(tmp_path: Path, loop_kind: str) -> None:
    certs = make_cert_files(tmp_path)
    seen: list[Any] = []

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, info: Any) -> None:
            seen.append((info, writer.get_extra_info('ssl_object')))
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()
        backend = await pp_start_server(
            handler, '127.0.0.1', 0, ssl=certs.server_context(),
            config=HeaderConfig())
        port = backend.sockets[0].getsockname()[1]
        dest = f'ssl://localhost:{port}?cafile={certs.ca_pem}&pp=v2'
        async with running_proxy('127.0.0.1:0', dest) as (_, service):
            reader, writer = await aconnect(service_address(service))
            client = writer.get_extra_info('sockname')
            writer.write(b'over tls')
            assert await asyncio.wait_for(reader.read(100), WAIT) == \
                b'over tls'
            writer.close()
        backend.close()
        info, ssl_object = seen[0]
        assert ssl_object is not None
        assert info.peername[1] == client[1]
    run(main, loop_kind)


@pytest.mark.parametrize('poller', POLLERS)
def test_tls_on_both_sides_large_transfer(tmp_path: Path,
                                          poller: str) -> None:
    """TLS terminated by the proxy and TLS to the destination, with more
    bytes than any buffer holds, both ways at once."""
    certs = make_cert_files(tmp_path)
    payload = os.urandom(6 << 20)

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, info: Any) -> None:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
        backend = await pp_start_server(
            handler, '127.0.0.1', 0, ssl=certs.server_context(),
            config=HeaderConfig())
        port = backend.sockets[0].getsockname()[1]
        listen = (f'ssl://127.0.0.1:0?cert={certs.server_pem}'
                  f'&key={certs.server_key}')
        dest = f'ssl://localhost:{port}?cafile={certs.ca_pem}'
        async with running_proxy(listen, dest, poller=poller) \
                as (_, service):
            host, lport = cast(tuple[str, int], service_address(service))
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, lport, ssl=certs.client_context(),
                server_hostname='localhost'), WAIT)

            async def send() -> None:
                for offset in range(0, len(payload), 1 << 20):
                    writer.write(payload[offset:offset + (1 << 20)])
                    await writer.drain()
            sender = asyncio.ensure_future(send())
            echoed = await asyncio.wait_for(
                reader.readexactly(len(payload)), WAIT * 2)
            await sender
            writer.close()
        backend.close()
        assert echoed == payload
    run(main)


@pytest.mark.parametrize('poller', POLLERS)
def test_tls_client_backpressure(tmp_path: Path, poller: str) -> None:
    """A TLS client and a destination that stops reading: the proxy holds
    a bounded amount, and everything arrives once the destination reads."""
    certs = make_cert_files(tmp_path)
    payload = os.urandom(1 << 20) * 64
    got = []

    async def main() -> None:
        release = asyncio.Event()

        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            await release.wait()
            got.append(await reader.read())
            writer.close()
        backend = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = backend.sockets[0].getsockname()[1]
        listen = (f'ssl://127.0.0.1:0?cert={certs.server_pem}'
                  f'&key={certs.server_key}')
        async with running_proxy(listen, f'127.0.0.1:{port}?pp=v1',
                                 poller=poller) as (server, service):
            host, lport = cast(tuple[str, int], service_address(service))
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, lport, ssl=certs.client_context(),
                server_hostname='localhost'), WAIT)

            async def send() -> None:
                for offset in range(0, len(payload), 1 << 20):
                    writer.write(payload[offset:offset + (1 << 20)])
                    await writer.drain()
                writer.close()
            sender = asyncio.ensure_future(send())
            # The proxy ends up holding bytes it cannot send: a bounded
            # amount, and it stops reading the client.
            relay = None
            for _ in range(400):
                relay = next(iter(server.relays), None)
                if relay is not None and relay.up is not None and \
                        relay.up.pending is not None:
                    break
                await asyncio.sleep(0.025)
            assert relay is not None and relay.up is not None
            assert relay.up.pending is not None
            assert len(relay.up.pending) <= 2 * 65536 + 4096
            assert not sender.done()
            release.set()
            await asyncio.wait_for(sender, WAIT * 2)
            for _ in range(400):
                if got:
                    break
                await asyncio.sleep(0.025)
        backend.close()
    run(main)
    assert got and hashlib.sha256(got[0]).digest() == \
        hashlib.sha256(payload).digest()


def test_tls_destination_that_fails_verification(tmp_path: Path) -> None:
    certs = make_cert_files(tmp_path)

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, info: Any) -> None:
            writer.close()
        backend = await pp_start_server(
            handler, '127.0.0.1', 0, ssl=certs.server_context(),
            config=HeaderConfig())
        port = backend.sockets[0].getsockname()[1]
        # The system CAs do not know the test CA.
        async with running_proxy('127.0.0.1:0', f'ssl://localhost:{port}') \
                as (server, service):
            assert await _roundtrip(service_address(service), b'x') == b''
            assert server.stats['connect_failed'] == 1
        backend.close()
    run(main)


def test_header_then_tls_on_the_listener(tmp_path: Path) -> None:
    """A proxy in front sends a header, then the client's TLS: both are
    read, and the original client goes on with the TLS facts."""
    certs = make_cert_files(tmp_path)
    inbound = build_header(result_from_sockaddrs(
        CLAIMED, SERVICE, protocol=socket.SOCK_STREAM))

    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        listen = (f'ssl://127.0.0.1:0?cert={certs.server_pem}'
                  f'&key={certs.server_key}&pp=v2')
        async with running_proxy(listen, dest) as (_, service):
            host, port = cast(tuple[str, int], service_address(service))
            sock = socket.create_connection((host, port))
            sock.sendall(inbound)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                sock=sock, ssl=certs.client_context(),
                server_hostname='localhost'), WAIT)
            writer.write(b'after both')
            assert await asyncio.wait_for(reader.readexactly(10), WAIT) == \
                b'after both'
            writer.close()
            parsed, = await backend.wait_headers()
        await backend.close()
        assert parsed.result.source == (ip_address(CLAIMED[0]), CLAIMED[1])
        assert parsed.result.tlv.ssl.has_ssl
    run(main)


# -- the header factory -------------------------------------------------------

_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), version=st.sampled_from([1, 2]),
       family=st.sampled_from(['v4', 'v6']))
def test_fast_headers_equal_the_codec(data: Any, version: int,
                                      family: str) -> None:
    peer: tuple[Any, ...]
    local: tuple[Any, ...]
    if family == 'v4':
        peer = (data.draw(_ipv4), data.draw(_port))
        local = (data.draw(_ipv4), data.draw(_port))
    else:
        peer = (data.draw(_ipv6), data.draw(_port), 0, 0)
        local = (data.draw(_ipv6), data.draw(_port), 0, 0)
    plain = HeaderFactory(version).build(peer, local)
    expected = build_header(result_from_sockaddrs(
        peer, local, protocol=socket.SOCK_STREAM), version=version)
    # Both IPv4-mapped: sent as TCP4 on purpose (see unmap_pair).
    mapped = peer[0].startswith('::ffff:') and \
        local[0].startswith('::ffff:') and '.' in peer[0] + local[0]
    if not mapped:
        assert plain == expected
    # With the TLVs, the bytes differ by the random id: compare parses.
    full = HeaderFactory(version, unique_id=True, crc32c=True)
    built = full.build(peer, local)
    parsed = parse_header(built)
    assert isinstance(parsed, ParsedHeader)
    assert parsed.length == len(built)
    result = parsed.result
    assert result.peername is not None and result.peername[1] == peer[1]
    if version == 2:
        assert len(result.tlv.unique_id) == 16
        assert result.tlv.crc32c is not None


def test_header_factory_slow_paths() -> None:
    facts = TLSFacts(version='TLSv1.3', cipher='TLS_AES_128_GCM_SHA256',
                     alpn='h2', sni='example.com', client_cert=True,
                     verified=True, cn='c', sig_alg='RSA-SHA256',
                     key_alg='RSA2048')
    factory = HeaderFactory(2, unique_id=True, crc32c=True, ssl=True,
                            alpn=True, authority=True)
    header = factory.build(('127.0.0.1', 1), ('127.0.0.1', 2), tls=facts)
    result = parse_header(header).result   # type: ignore[union-attr]
    assert result.tlv.ssl.cn == 'c' and result.tlv.ssl.verified
    assert result.tlv.alpn == b'h2'
    assert result.tlv.authority == 'example.com'
    assert 'TLSv1.3' in repr(facts)
    # A dual-stack listener's IPv4 client: sent as TCP4.
    header = HeaderFactory(1).build(('::ffff:10.0.0.1', 5, 0, 0),
                                    ('::ffff:10.0.0.2', 6, 0, 0))
    assert header == b'PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n'
    assert HeaderFactory(None).build(('1.2.3.4', 1), ('1.2.3.4', 2)) == b''
    with pytest.raises(ValueError):
        HeaderFactory(3)


def test_cert_summary_rsa() -> None:
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert('rsa.example', common_name='rsa.example',
                         key_type=trustme.KeyType.RSA)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    summary = cert_summary(der)
    assert summary.cn == 'rsa.example'
    assert summary.sig_alg == 'RSA-SHA256'
    assert summary.key_alg == 'RSA2048'
    assert cert_summary(b'\x30\x03\x02\x01\x00') == (None, None, None)


# -- the 0.4 and 0.11 asyncio protocols ------------------------------------------

@pytest.mark.parametrize('loop_kind', LOOPS)
def test_legacy_server_and_client(loop_kind: str) -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        host, port = cast(tuple[str, int], backend.address)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Server(ProxyProtocolV2(), loop, 262144, host, port),
            '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        data = await _roundtrip(address, b'legacy' * 10000)
        assert data == b'legacy' * 10000
        parsed, = await backend.wait_headers()
        server.close()
        await backend.close()
        # 0.4 sent an UNSPEC protocol nibble; now it says STREAM.
        assert parsed.result.protocol == socket.SOCK_STREAM
        assert dest
    run(main, loop_kind)


def test_legacy_server_with_unreachable_destination() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Server(ProxyProtocolV2(), loop, 1024, '127.0.0.1', port),
            '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        assert await _roundtrip(address, b'x') == b''
        server.close()
        assert Client is not None
    run(main)


@pytest.mark.parametrize('loop_kind', LOOPS)
def test_downstream_and_upstream_protocols(loop_kind: str) -> None:
    async def main() -> None:
        backend = Recorder()
        dest = await backend.start()
        loop = asyncio.get_running_loop()
        upstream = Address(dest + '?pp=v2')
        server = await loop.create_server(
            lambda: DownstreamProtocol(UpstreamProtocol, loop, 262144, None,
                                       upstream), '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        payload = os.urandom(3 << 20)
        assert await _roundtrip(address, payload) == payload
        parsed, = await backend.wait_headers()
        server.close()
        await backend.close()
        assert len(parsed.result.tlv.unique_id) == 16
    run(main, loop_kind)


def test_protocol_backpressure_pauses_the_other_side() -> None:
    class FakeTransport(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.paused = False
            self.written: list[bytes] = []

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

        def write(self, data: Any) -> None:
            self.written.append(bytes(data))

        def can_write_eof(self) -> bool:
            return True

        def write_eof(self) -> None:
            self.written.append(b'<eof>')

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

        def close(self) -> None:
            pass

    from proxyprotocol.server.protocol import RelayProtocol
    one, two = RelayProtocol(1024), RelayProtocol(1024)
    one.peer, two.peer = two, one
    t1, t2 = FakeTransport(), FakeTransport()
    one.connection_made(t1)
    two.connection_made(t2)
    two.pause_writing()
    assert t1.paused
    two.resume_writing()
    assert not t1.paused
    buffer = one.get_buffer(-1)
    buffer[:3] = b'abc'
    one.buffer_updated(3)
    assert t2.written == [b'abc']
    assert one.eof_received() is True
    assert t2.written[-1] == b'<eof>'
    assert two.eof_received() is False


def test_address_tlv_and_describe() -> None:
    address = Address('127.0.0.1:80?tlv=crc32c&tlv=unique-id')
    assert address.tlvs == {'crc32c', 'unique-id'}
    assert Address('h:1?tlv=none').tlvs == frozenset()
    assert Address('unix:@abstract', server=True).path == '\x00abstract'
    assert Address('unix:@abstract', server=True).describe() == \
        'unix:@abstract'
    assert Address('[::1]:80').describe() == '[::1]:80'
    assert Address('ssl://h:443?cafile=x').describe() == 'ssl://h:443'


@pytest.mark.parametrize('splice', [True, False])
def test_splice_switch_and_fallback(splice: bool,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyprotocol.server import relay as relay_module
    if not splice:
        monkeypatch.setattr(relay_module, '_splice_ok', False)
    payload = os.urandom(4 << 20)

    async def main() -> Optional[bool]:
        backend = Recorder()
        dest = await backend.start()
        spliced = None
        async with running_proxy('127.0.0.1:0', dest) as (server, service):
            reader, writer = await aconnect(service_address(service))
            writer.write(payload)
            await writer.drain()
            echoed = await asyncio.wait_for(
                reader.readexactly(len(payload)), WAIT)
            relay, = server.relays
            assert relay.up is not None
            spliced = relay.up.pipe_r >= 0
            writer.write_eof()
            await read_all(reader)
            writer.close()
        await backend.close()
        assert echoed == payload
        return spliced
    spliced = run(main)
    if relay_module._SPLICE is not None:
        assert spliced is splice
