"""The trusted-proxy policy, timeouts, half-close and slow clients.

The configuration object is checked directly; the behaviour is checked over
real loopback sockets. "Untrusted" peers are simulated with an allowlist
that excludes loopback (``10.0.0.0/8``), so the test's own 127.0.0.1 / ::1 /
UNIX clients are outside it.

"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

import pytest

from support.loops import LOOPS, run
from adapter_support import (CLIENT_V4, KINDS, WAIT, close, header,
                             read_until_closed, serve)
from proxyprotocol import (NeedMore, ProxyProtocolSyntaxError,
                           ProxyProtocolTooLongError)
from proxyprotocol.acceptor import (ConnectionInfo, HeaderAcceptor,
                                    ProxyProtocolEOFError,
                                    ProxyProtocolRejectedError,
                                    ProxyProtocolTimeoutError)
from proxyprotocol.aio import stream_protocol_factory
from proxyprotocol.header import DEFAULT_MAX_LENGTH
from proxyprotocol.policy import (DEFAULT_CONFIG, DEFAULT_TIMEOUT, UNIX,
                                  HeaderConfig, Policy)
from proxyprotocol.tlv import ProxyProtocolTLV

pytestmark = pytest.mark.timeout(120)

UNTRUSTED = ['10.0.0.0/8']  # an allowlist that excludes every test client


# The configuration object

def test_defaults() -> None:
    config = HeaderConfig()
    assert config == DEFAULT_CONFIG and hash(config) == hash(DEFAULT_CONFIG)
    assert config.trusted_policy is Policy.REQUIRE
    assert config.untrusted_policy is Policy.REJECT
    assert config.versions == (1, 2)
    assert config.timeout == DEFAULT_TIMEOUT >= 3.0  # spec: at least 3 s
    assert config.max_length == DEFAULT_MAX_LENGTH
    assert config.trusted == (IPv4Network('127.0.0.0/8'),
                              IPv6Network('::1/128'), UNIX)
    assert "trusted=('127.0.0.0/8', '::1/128', 'unix')" in repr(config)


def test_trust_decisions() -> None:
    config = HeaderConfig(trusted=['192.0.2.0/24', IPv4Address('10.1.2.3'),
                                   '2001:db8::/32'])
    assert config.is_trusted(('192.0.2.9', 1))
    assert config.is_trusted(('10.1.2.3', 1))
    assert not config.is_trusted(('10.1.2.4', 1))
    assert config.is_trusted(('::ffff:192.0.2.9', 1, 0, 0))  # mapped
    assert config.is_trusted(('2001:db8::1%eth0', 1, 0, 5))  # scope id
    assert not config.is_trusted(('127.0.0.1', 1))
    assert not config.is_trusted('')  # UNIX not listed
    assert not config.is_trusted(None)
    assert not config.is_trusted(('not an address', 1))
    assert config.policy_for(('192.0.2.9', 1)) is Policy.REQUIRE
    assert config.policy_for(('127.0.0.1', 1)) is Policy.REJECT
    unix = HeaderConfig(trusted=['UNIX'])
    assert unix.is_trusted('') and unix.is_trusted(b'\0abstract')
    assert unix.is_trusted(None, family=1)  # AF_UNIX
    assert not unix.is_trusted(('127.0.0.1', 1))


def test_validation() -> None:
    with pytest.raises(ValueError, match='untrusted_policy'):
        HeaderConfig(untrusted_policy=Policy.REQUIRE)
    with pytest.raises(ValueError, match='untrusted_policy'):
        HeaderConfig(untrusted_policy='optional')
    with pytest.raises(ValueError, match='trusted_policy'):
        HeaderConfig(trusted_policy='sometimes')
    with pytest.raises(ValueError, match='invalid trusted network'):
        HeaderConfig(trusted=['10.0.0.1/8'])  # host bits set
    with pytest.raises(TypeError):
        HeaderConfig(trusted='10.0.0.0/8')
    with pytest.raises(TypeError):
        HeaderConfig(trusted=[42])  # type: ignore
    with pytest.raises(ValueError, match='versions'):
        HeaderConfig(versions=[3])
    with pytest.raises(ValueError, match='versions'):
        HeaderConfig(versions=[])
    for bad in (0, -1, float('inf'), float('nan'), True, '5'):
        with pytest.raises(ValueError, match='timeout'):
            HeaderConfig(timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='max_length'):
        HeaderConfig(max_length=8)
    with pytest.raises(AttributeError):
        setattr(DEFAULT_CONFIG, '_timeout', 1.0)
    with pytest.raises(TypeError):
        DEFAULT_CONFIG.replace(nonsense=1)


def test_replace_and_strings() -> None:
    config = DEFAULT_CONFIG.replace(trusted_policy='optional', timeout=1,
                                    versions=[2], untrusted_policy='ignore')
    assert config.trusted_policy is Policy.OPTIONAL
    assert config.untrusted_policy is Policy.IGNORE
    assert config.timeout == 1.0 and config.versions == (2,)
    assert config.trusted == DEFAULT_CONFIG.trusted
    assert config != DEFAULT_CONFIG
    assert DEFAULT_CONFIG.__eq__(object()) is NotImplemented
    assert Policy.OPTIONAL.reads_header and not Policy.IGNORE.reads_header


# The sans-I/O acceptor

def acceptor(config: HeaderConfig = DEFAULT_CONFIG) -> HeaderAcceptor:
    return HeaderAcceptor(config, socket_peername=('127.0.0.1', 5000),
                          socket_sockname=('127.0.0.1', 80), socket_family=2)


def test_acceptor_byte_at_a_time_and_trailing() -> None:
    acc = acceptor()
    assert acc.start() is None and acc.start() is None
    data = header(2) + b'app'
    outcome: Any = None
    for i in range(len(data)):
        outcome = acc.feed(data[i:i + 1])
    assert isinstance(outcome, ConnectionInfo)
    assert outcome.peername == CLIENT_V4
    assert acc.trailing_data == b'app'
    assert acc.info is outcome
    acc.feed_eof()  # fine once the header is whole


def test_acceptor_reports_what_to_read() -> None:
    acc = acceptor()
    acc.start()
    assert acc.want == NeedMore(8)
    assert acc.feed(b'PROXY TC') == NeedMore(want_line=True)
    outcome = acc.feed(b'P4 1.2.3.4 5.6.7.8 1 2\r\nrest')
    assert isinstance(outcome, ConnectionInfo)
    assert acc.trailing_data == b'rest'
    assert acc.feed(b'+more') is outcome
    assert acc.trailing_data == b'rest+more'


def test_acceptor_failures() -> None:
    acc = acceptor()
    acc.feed(b'PROXY TCP4 1.2')
    with pytest.raises(ProxyProtocolEOFError) as eof:
        acc.feed_eof()
    assert eof.value.partial == b'PROXY TCP4 1.2'
    assert isinstance(eof.value, EOFError)
    assert '14 bytes' in str(acc.timeout_error())
    with pytest.raises(ProxyProtocolSyntaxError):
        acceptor().feed(b'GET / HTTP/1.1\r\n')
    with pytest.raises(ProxyProtocolRejectedError):
        acceptor(HeaderConfig(trusted=UNTRUSTED)).feed(b'x')
    ignoring = acceptor(HeaderConfig(trusted=UNTRUSTED,
                                     untrusted_policy='ignore'))
    info = ignoring.feed(b'PROXY ...')
    assert isinstance(info, ConnectionInfo) and not info.trusted
    assert ignoring.trailing_data == b'PROXY ...'


def test_acceptor_optional_detection() -> None:
    config = HeaderConfig(trusted_policy='optional')
    acc = acceptor(config)
    acc.start()
    assert acc.want == NeedMore(1)
    assert acc.feed(b'\r\n') == NeedMore(10)  # the rest of the v2 signature
    no_header = acceptor(config)
    info = no_header.feed(b'POST / HTTP/1.1')
    assert isinstance(info, ConnectionInfo) and info.header is None
    assert info.initial_data == no_header.trailing_data == b'POST / HTTP/1.1'
    v1_only = acceptor(config.replace(versions=[1]))
    assert isinstance(v1_only.feed(b'\r\n\r\n\x00\r\nQUIT\n'),
                      ConnectionInfo)  # v2 not accepted: app data
    with_header = acceptor(config)
    info = with_header.feed(header(1) + b'x')
    assert isinstance(info, ConnectionInfo) and info.proxied
    assert with_header.trailing_data == b'x' and info.initial_data == b''


# The matrix, over real sockets

class Outcome:
    """What a matrix case observed."""

    def __init__(self) -> None:
        self.infos: list[tuple[ConnectionInfo, bytes, Any]] = []
        self.dropped: list[BaseException] = []
        self.reply = b''


def run_case(kind: str, config: HeaderConfig, payload: bytes,
             loop_kind: str = 'asyncio') -> Outcome:
    outcome = Outcome()

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        line = await asyncio.wait_for(reader.readline(), WAIT)
        outcome.infos.append((info, line, writer.get_extra_info('peername')))
        writer.write(b'ok\n')
        await writer.drain()
        writer.close()

    async def main() -> None:
        factory = stream_protocol_factory(
            handler, config,
            on_drop=lambda peer, exc: outcome.dropped.append(exc))
        async with serve(kind, factory) as listener:
            reader, writer = await listener.open()
            writer.write(payload)
            outcome.reply = await read_until_closed(reader)
            await close(writer)
    run(main, loop_kind)
    return outcome


PRESENT = header(1) + b'hello\n'
ABSENT = b'hello\n'
GARBAGE = b'PROXY garbage\r\nhello\n'


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('payload', [PRESENT, ABSENT, GARBAGE],
                         ids=['present', 'absent', 'garbage'])
@pytest.mark.parametrize('trusted', [True, False],
                         ids=['trusted', 'untrusted'])
def test_matrix_defaults(kind: str, payload: bytes, trusted: bool) -> None:
    config = DEFAULT_CONFIG if trusted else HeaderConfig(trusted=UNTRUSTED)
    outcome = run_case(kind, config, payload)
    if trusted and payload is PRESENT:
        assert outcome.reply == b'ok\n'
        info, line, peername = outcome.infos[0]
        assert line == b'hello\n'
        assert peername == info.peername == CLIENT_V4
        assert info.trusted and info.proxied
    else:
        # Required header missing or invalid, or an untrusted peer: dropped
        # before the application sees anything.
        assert outcome.reply == b''
        assert outcome.infos == []
        expected = ProxyProtocolSyntaxError if trusted \
            else ProxyProtocolRejectedError
        assert [type(e) for e in outcome.dropped] == [expected]


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('payload', [PRESENT, ABSENT, GARBAGE],
                         ids=['present', 'absent', 'garbage'])
def test_matrix_untrusted_ignore(kind: str, payload: bytes) -> None:
    config = HeaderConfig(trusted=UNTRUSTED, untrusted_policy='ignore')
    outcome = run_case(kind, config, payload)
    assert outcome.reply == b'ok\n'
    info, line, peername = outcome.infos[0]
    assert not info.trusted and not info.proxied
    assert info.policy is Policy.IGNORE
    # Whatever the untrusted peer sent is application data, never its
    # address: the reported client is the real socket peer.
    assert line == payload.split(b'\n')[0] + b'\n'
    assert peername == info.socket_peername != CLIENT_V4


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('payload', [PRESENT, ABSENT, GARBAGE],
                         ids=['present', 'absent', 'garbage'])
def test_matrix_trusted_optional(kind: str, payload: bytes) -> None:
    config = HeaderConfig(trusted_policy='optional')
    outcome = run_case(kind, config, payload)
    if payload is GARBAGE:
        assert outcome.reply == b'' and outcome.infos == []
        return
    assert outcome.reply == b'ok\n'
    info, line, peername = outcome.infos[0]
    assert line == b'hello\n'
    if payload is PRESENT:
        assert peername == CLIENT_V4
    else:
        assert info.header is None and peername == info.socket_peername


# Timeouts, half-close, slow clients

@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('payload', [b'', b'PROXY TCP4 1.2', b'\r\n\r\n'],
                         ids=['silent', 'partial-v1', 'partial-v2'])
def test_header_timeout(payload: bytes, loop_kind: str) -> None:
    outcome = run_case('ipv4', HeaderConfig(timeout=0.3), payload, loop_kind)
    assert outcome.reply == b'' and outcome.infos == []
    assert len(outcome.dropped) == 1
    assert isinstance(outcome.dropped[0], ProxyProtocolTimeoutError)


@pytest.mark.parametrize('loop_kind', LOOPS)
@pytest.mark.parametrize('kind', KINDS)
def test_half_close_after_partial_header(kind: str, loop_kind: str) -> None:
    # The timeout is far longer than any wait below: the drop must come from
    # the end of stream itself. 0.11 spun the event loop forever here.
    config = HeaderConfig(timeout=600)
    dropped: list[BaseException] = []
    served: list[Any] = []

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        served.append(info.peername)
        writer.write(b'ok\n')
        writer.close()

    async def main() -> None:
        factory = stream_protocol_factory(
            handler, config, on_drop=lambda peer, exc: dropped.append(exc))
        async with serve(kind, factory) as listener:
            reader, writer = await listener.open()
            writer.write(b'PROXY TCP4 1.2')
            writer.write_eof()
            assert await read_until_closed(reader) == b''
            await close(writer)
            # The server keeps serving.
            reader, writer = await listener.open()
            writer.write(header(2))
            assert await read_until_closed(reader) == b'ok\n'
            await close(writer)
    run(main, loop_kind)
    assert [type(e) for e in dropped] == [ProxyProtocolEOFError]
    assert served == [CLIENT_V4]


@pytest.mark.parametrize('loop_kind', LOOPS)
def test_stalled_clients_do_not_delay_others(loop_kind: str) -> None:
    stalled_count = 200
    config = HeaderConfig(timeout=300)
    served: list[Any] = []

    async def handler(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter,
                      info: ConnectionInfo) -> None:
        served.append(info.peername)
        writer.write(b'ok\n')
        writer.close()

    async def main() -> None:
        factory = stream_protocol_factory(handler, config)
        async with serve('ipv4', factory) as listener:
            stalled = []
            for i in range(stalled_count):
                reader, writer = await listener.open()
                # Partial headers of all kinds, then silence.
                writer.write([b'', b'P', b'PROXY TCP4 1.2.3.4 ',
                              b'\r\n\r\n\x00\r\nQUIT\n!'][i % 4])
                stalled.append((reader, writer))
            # One more byte, still incomplete, on some of them.
            for i, (_, writer) in enumerate(stalled[:20]):
                writer.write([b'P', b'R', b'5', b'\x11'][i % 4])
            try:
                reader, writer = await listener.open()
                writer.write(header(1))
                reply = await asyncio.wait_for(reader.read(), WAIT)
                await close(writer)
                assert reply == b'ok\n'
                # None of the stalled ones was served or dropped meanwhile.
                assert all(not r.at_eof() for r, _ in stalled)
            finally:
                for _, writer in stalled:
                    writer.close()
    run(main, loop_kind)
    assert served == [CLIENT_V4]


def test_oversized_header_is_refused() -> None:
    config = HeaderConfig(max_length=64)
    big = header(2, tlv=ProxyProtocolTLV(unique_id=b'x' * 100))
    outcome = run_case('ipv4', config, big + b'hello\n')
    assert outcome.reply == b'' and outcome.infos == []
    assert [type(e) for e in outcome.dropped] == [ProxyProtocolTooLongError]
