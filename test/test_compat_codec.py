"""The codec as releases 0.4.0 and 0.11.3 exposed it (docs/compat API).

Written from the API inventory, not from upstream's tests: names, result
formats, TLV classes, and the v1/v2/detect/noop/version implementations with
both generations' methods.
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC, SOCK_DGRAM, SOCK_STREAM
from typing import Any, Awaitable, Optional, TypeVar, Union

import pytest

import proxyprotocol
import proxyprotocol.__about__
import proxyprotocol.base
from proxyprotocol import (ProxyProtocol, ProxyProtocolChecksumError,
                           ProxyProtocolError, ProxyProtocolIncompleteError,
                           ProxyProtocolSyntaxError, ProxyProtocolWantRead)
from proxyprotocol.checksum import Checksum, crc32c
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.errors import NeedMore
from proxyprotocol.noop import ProxyProtocolNoop
from proxyprotocol.result import (ProxyProtocolResult,
                                  ProxyProtocolResultIPv4,
                                  ProxyProtocolResultIPv6,
                                  ProxyProtocolResultLocal,
                                  ProxyProtocolResultUnix,
                                  ProxyProtocolResultUnknown, ProxyResult,
                                  ProxyResultIPv4, ProxyResultIPv6,
                                  ProxyResultLocal, ProxyResultType,
                                  ProxyResultUnix, ProxyResultUnknown,
                                  is_ipv4, is_ipv6, is_local, is_unix,
                                  is_unknown)
from proxyprotocol.tlv import (ProxyProtocolExtTLV, ProxyProtocolSSLTLV,
                               ProxyProtocolTLV)
from proxyprotocol.typing import StreamReaderProtocol
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2, ProxyProtocolV2Header
from proxyprotocol.version import ProxyProtocolVersion
from vectors.golden import PACKED_0_11, SIG, VALID_V2, h

T = TypeVar('T')

V4 = ProxyResultIPv4((IPv4Address('1.2.3.4'), 10),
                     (IPv4Address('5.6.7.8'), 20))
V4_STREAM = ProxyResultIPv4((IPv4Address('0.0.0.0'), 0),
                            (IPv4Address('127.0.0.1'), 25),
                            protocol=SOCK_STREAM)
V6 = ProxyResultIPv6((IPv6Address('::1'), 10), (IPv6Address('::2'), 20))
UNIX = ProxyResultUnix('/a', '/b')


def run(coro: Awaitable[T]) -> T:
    """Run ``coro`` on a fresh event loop, bounded in time."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 5)
    return asyncio.run(bounded())


def reader_of(data: bytes, *, eof: bool = True,
              exc: Optional[Exception] = None) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if exc is not None:
        reader.set_exception(exc)
    elif eof:
        reader.feed_eof()
    return reader


async def read_with(pp: ProxyProtocol, data: bytes, signature: bytes = b'',
                    **kwargs: Any) -> tuple[ProxyResult, bytes]:
    """``pp.read`` on a stream holding ``data``; also what it left unread."""
    reader = reader_of(data, **kwargs)
    result = await pp.read(reader, signature=signature)
    rest = b'' if reader.exception() else await reader.read()
    return result, rest


def incomplete(pp: ProxyProtocol, data: Union[bytes, memoryview]
               ) -> ProxyProtocolWantRead:
    with pytest.raises(ProxyProtocolIncompleteError) as info:
        pp.unpack(data)
    return info.value.want_read


class TestPackage:
    def test_versions(self) -> None:
        assert isinstance(proxyprotocol.__version__, str)
        assert proxyprotocol.__about__.__version__ == \
            proxyprotocol.__version__

    def test_root_names(self) -> None:
        for name in ('ProxyProtocolError', 'ProxyProtocolResult',
                     'ProxyProtocol', 'ProxyProtocolSyntaxError',
                     'ProxyProtocolChecksumError',
                     'ProxyProtocolIncompleteError', 'ProxyProtocolWantRead',
                     '__version__'):
            assert name in proxyprotocol.__all__
            assert hasattr(proxyprotocol, name)
        assert proxyprotocol.ProxyProtocolResult is ProxyResult
        assert proxyprotocol.ProxyResult is ProxyResult

    def test_base_module_is_the_same_objects(self) -> None:
        # The 0.4 README imported these from proxyprotocol.base.
        assert proxyprotocol.base.ProxyProtocol is ProxyProtocol
        assert proxyprotocol.base.ProxyProtocolError is ProxyProtocolError
        assert proxyprotocol.base.ProxyProtocolResult is ProxyResult
        assert proxyprotocol.base.DataReader is StreamReaderProtocol
        assert isinstance(ProxyProtocolDetect(),
                          proxyprotocol.base.ProxyProtocol)


class TestErrors:
    def test_hierarchy(self) -> None:
        assert issubclass(ProxyProtocolError, ValueError)
        assert issubclass(ProxyProtocolSyntaxError, ProxyProtocolError)
        assert issubclass(ProxyProtocolChecksumError, ProxyProtocolError)
        assert not issubclass(ProxyProtocolIncompleteError, ValueError)

    def test_checksum_error(self) -> None:
        exc = ProxyProtocolChecksumError(V4)
        assert exc.result is V4
        assert isinstance(exc, ValueError)
        assert exc.field == 'v2.tlv.crc32c'
        assert str(exc) == 'CRC32C checksum mismatch (field v2.tlv.crc32c)'

    def test_incomplete(self) -> None:
        want = ProxyProtocolWantRead(5)
        exc = ProxyProtocolIncompleteError(want)
        assert exc.want_read is want
        assert str(exc) == 'Additional data needed'

    def test_want_read(self) -> None:
        assert ProxyProtocolWantRead is NeedMore
        want = ProxyProtocolWantRead()
        assert want.want_bytes is None and want.want_line is False
        want = ProxyProtocolWantRead(want_line=True)
        assert want.want_bytes is None and want.want_line is True
        assert repr(want) == 'NeedMore(want_line=True)'
        assert repr(NeedMore(3)) == 'NeedMore(want_bytes=3)'
        assert NeedMore(3) == NeedMore(want_bytes=3)
        assert NeedMore(3) != NeedMore(4)
        assert NeedMore(3) != NeedMore(want_line=True)
        assert NeedMore(3).__eq__(3) is NotImplemented
        assert hash(NeedMore(3)) == hash(NeedMore(3))
        with pytest.raises(AttributeError):
            want.want_bytes = 1  # type: ignore[misc]

    def test_error_text(self) -> None:
        assert str(ProxyProtocolError('bad')) == 'bad'
        assert str(ProxyProtocolError('bad', field='f')) == 'bad (field f)'
        assert str(ProxyProtocolError('bad', offset=3)) == 'bad (offset 3)'
        assert str(ProxyProtocolError(field='f')) == ''
        exc = ProxyProtocolSyntaxError('x', field='v1', offset=0)
        assert (exc.field, exc.offset) == ('v1', 0)


class TestResults:
    def test_legacy_names_are_the_same_classes(self) -> None:
        assert ProxyProtocolResult is ProxyResult
        assert ProxyProtocolResultLocal is ProxyResultLocal
        assert ProxyProtocolResultUnknown is ProxyResultUnknown
        assert ProxyProtocolResultIPv4 is ProxyResultIPv4
        assert ProxyProtocolResultIPv6 is ProxyResultIPv6
        assert ProxyProtocolResultUnix is ProxyResultUnix

    def test_str_is_the_0_4_text(self) -> None:
        assert str(ProxyResultLocal()) == 'ProxyProtocolResultLocal()'
        assert str(ProxyResultUnknown(RuntimeError('x'))) == \
            'ProxyProtocolResultUnknown()'
        assert str(V4) == ("ProxyProtocolResultIPv4((IPv4Address('1.2.3.4'),"
                           " 10), (IPv4Address('5.6.7.8'), 20))")
        assert str(V4_STREAM) == (
            "ProxyProtocolResultIPv4((IPv4Address('0.0.0.0'), 0), "
            "(IPv4Address('127.0.0.1'), 25), protocol=socket.SOCK_STREAM)")
        assert str(V6) == ("ProxyProtocolResultIPv6((IPv6Address('::1'), 10),"
                           " (IPv6Address('::2'), 20))")
        assert str(UNIX) == "ProxyProtocolResultUnix('/a', '/b')"
        assert str(ProxyResultUnix('/a', '/b', protocol=SOCK_DGRAM)) == \
            "ProxyProtocolResultUnix('/a', '/b', protocol=socket.SOCK_DGRAM)"
        # TLVs are not part of the 0.4 text.
        tlv = ProxyProtocolTLV(alpn=b'h2')
        assert str(ProxyResultLocal(tlv=tlv)) == 'ProxyProtocolResultLocal()'
        assert 'tlv' not in str(ProxyResultIPv4(V4.source, V4.dest, tlv=tlv))

    def test_repr_is_the_0_11_text(self) -> None:
        tlv = ProxyProtocolTLV(alpn=b'h2')
        assert repr(ProxyResultLocal()) == 'ProxyResultLocal()'
        assert repr(ProxyResultLocal(tlv=tlv)) == \
            "ProxyResultLocal(tlv=ProxyProtocolTLV(b'\\x01\\x00\\x02h2'))"
        assert repr(ProxyResultUnknown()) == 'ProxyResultUnknown()'
        assert repr(ProxyResultUnknown(RuntimeError('test'))) == \
            "ProxyResultUnknown(RuntimeError('test'))"
        assert repr(ProxyResultUnknown(RuntimeError('t'), tlv=tlv)) == (
            "ProxyResultUnknown(RuntimeError('t'), "
            "tlv=ProxyProtocolTLV(b'\\x01\\x00\\x02h2'))")
        assert repr(V4_STREAM) == (
            "ProxyResultIPv4((IPv4Address('0.0.0.0'), 0), "
            "(IPv4Address('127.0.0.1'), 25), protocol=socket.SOCK_STREAM)")
        assert repr(ProxyResultIPv6(V6.source, V6.dest, tlv=tlv)) == (
            "ProxyResultIPv6((IPv6Address('::1'), 10), (IPv6Address('::2'), "
            "20), tlv=ProxyProtocolTLV(b'\\x01\\x00\\x02h2'))")
        assert repr(UNIX) == "ProxyResultUnix('/a', '/b')"
        assert repr(ProxyResultUnix('/a', '/b', protocol=SOCK_STREAM,
                                    tlv=tlv)) == (
            "ProxyResultUnix('/a', '/b', protocol=socket.SOCK_STREAM, "
            "tlv=ProxyProtocolTLV(b'\\x01\\x00\\x02h2'))")

    @pytest.mark.parametrize('result, kind, proxied, family, peer, sock', [
        (ProxyResultLocal(), ProxyResultType.LOCAL, False, socket.AF_UNSPEC,
         None, None),
        (ProxyResultUnknown(), ProxyResultType.UNKNOWN, True,
         socket.AF_UNSPEC, None, None),
        (V4, ProxyResultType.IPv4, True, AF_INET, ('1.2.3.4', 10),
         ('5.6.7.8', 20)),
        (V6, ProxyResultType.IPv6, True, AF_INET6, ('::1', 10, 0, 0),
         ('::2', 20, 0, 0)),
        (UNIX, ProxyResultType.UNIX, True, AF_UNIX, '/a', '/b'),
    ])
    def test_properties(self, result: ProxyResult, kind: ProxyResultType,
                        proxied: bool, family: socket.AddressFamily,
                        peer: Any, sock: Any) -> None:
        assert result.type is kind
        assert type(result).type is kind          # a class attribute
        assert result.proxied is proxied
        assert result.family == family == kind.family
        assert result.peername == peer and result._peername == peer
        assert result.sockname == sock and result._sockname == sock
        assert result.protocol is None
        assert result.tlv == ProxyProtocolTLV()
        checks = (is_local, is_unknown, is_ipv4, is_ipv6, is_unix)
        assert [c(result) for c in checks] == \
            [k is kind for k in ProxyResultType]

    def test_source_and_dest(self) -> None:
        assert V4.source == (IPv4Address('1.2.3.4'), 10)
        assert V4.dest == (IPv4Address('5.6.7.8'), 20)
        assert V6.source == (IPv6Address('::1'), 10)
        assert UNIX.source == '/a' and UNIX.dest == '/b'
        assert ProxyResultLocal().source is None
        assert ProxyResultUnknown().dest is None
        assert ProxyResultUnknown(RuntimeError()).exception is not None

    def test_result_type_values(self) -> None:
        assert [t.value for t in ProxyResultType] == [
            (1, 'AF_UNSPEC'), (2, 'AF_UNSPEC'), (3, 'AF_INET'),
            (4, 'AF_INET6'), (5, 'AF_UNIX')]
        assert [t.name for t in ProxyResultType] == \
            ['LOCAL', 'UNKNOWN', 'IPv4', 'IPv6', 'UNIX']

    def test_equality_and_hash_by_value(self) -> None:
        again = ProxyResultIPv4((IPv4Address('1.2.3.4'), 10),
                                (IPv4Address('5.6.7.8'), 20))
        assert again == V4 and hash(again) == hash(V4)
        assert V4 != V4_STREAM
        assert V4 != ProxyResultIPv4(V4.source, V4.dest,
                                     tlv=ProxyProtocolTLV(alpn=b'x'))
        assert ProxyResultLocal() != ProxyResultUnknown()
        assert ProxyResultUnknown() != ProxyResultUnknown(RuntimeError())
        assert V4.__eq__('x') is NotImplemented
        assert len({V4, again, V6, UNIX}) == 3

    def test_immutable(self) -> None:
        with pytest.raises(AttributeError):
            V4.source = None  # type: ignore[misc, assignment]
        with pytest.raises(AttributeError):
            V4.anything = 1  # type: ignore[attr-defined]

    def test_text_addresses_accepted(self) -> None:
        result = ProxyResultIPv4(('1.2.3.4', 1), ('5.6.7.8', 2))  # type: ignore
        assert result.source_ip == IPv4Address('1.2.3.4')
        assert result.source == V4.source[:1] + (1,)
        with pytest.raises(ValueError):
            ProxyResultIPv4(('::1', 1), ('5.6.7.8', 2))  # type: ignore


class TestTLV011:
    """0.11's TLV construction rules."""

    def test_data_init_and_keywords(self) -> None:
        data = h('05 0002 6964 01 0002 6832')
        tlv = ProxyProtocolTLV(data)
        assert tlv.unique_id == b'id' and tlv.alpn == b'h2'
        tlv = ProxyProtocolTLV(data, init={0x01: b'h3'})
        assert tlv.alpn == b'h3'
        assert bytes(tlv) == h('01 0002 6833 05 0002 6964')  # sorted
        tlv = ProxyProtocolTLV(data, init={0x01: b'h3'}, alpn=b'h4')
        assert tlv.alpn == b'h4'

    def test_ext_stored_as_noop(self) -> None:
        tlv = ProxyProtocolTLV(ext=ProxyProtocolExtTLV(dnsbl='x'))
        assert list(tlv) == [0x04]
        assert tlv.ext.dnsbl == 'x'

    def test_ssl_flags(self) -> None:
        ssl = ProxyProtocolSSLTLV(h('05 00000025'), has_ssl=False)
        assert (ssl.client, ssl.verify) == (4, 37)
        assert ProxyProtocolTLV(ssl=ssl).ssl == ssl

    def test_checksum_never_none(self) -> None:
        assert crc32c is not None
        assert crc32c(b'123456789') == 0xE3069283
        fn: Checksum = crc32c
        assert fn(b'') == 0


class TestV1:
    pp = ProxyProtocolV1()

    def test_is_valid(self) -> None:
        assert self.pp.is_valid(b'PROXY TC')
        assert self.pp.is_valid(memoryview(b'PROXY '))
        assert not self.pp.is_valid(b'PROXY')
        assert not self.pp.is_valid(SIG[:8])

    def test_unpack(self) -> None:
        line = b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n'
        assert self.pp.unpack(line) == ProxyResultIPv4(
            V4.source, V4.dest, protocol=SOCK_STREAM)
        assert self.pp.unpack(memoryview(line)) == self.pp.unpack(line)
        assert self.pp.unpack(b'PROXY TCP6 ::1 ::2 10 20\r\n').source == \
            V6.source
        assert self.pp.unpack(b'PROXY UNKNOWN\r\n') == ProxyResultUnknown()
        want = incomplete(self.pp, line[:-1])
        assert want.want_line and want.want_bytes is None
        with pytest.raises(ProxyProtocolSyntaxError):
            self.pp.unpack(b'PROXY TCP4 1.2.3.4 5.6.7.8 10 99999\r\n')

    def test_unpack_line_and_parse_line(self) -> None:
        line = b'PROXY TCP6 ::1 ::2 10 20\r\n'
        assert self.pp.unpack_line(line).dest == V6.dest
        assert self.pp.parse_line(line).dest == V6.dest
        for bad in (b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20',  # no CRLF
                    b'PROXY TCP4 1.2.3.4 5.6.7.8 10\r\n',
                    b'XPROXY UNKNOWN\r\n', b'PROXY TCP8 a b 1 2\r\n',
                    b'PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n'):
            with pytest.raises(ProxyProtocolError):
                self.pp.parse_line(bad)
            with pytest.raises(ProxyProtocolSyntaxError):
                self.pp.unpack_line(bad)

    def test_pack(self) -> None:
        assert self.pp.pack(V4) == b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n'
        assert self.pp.pack(V6) == b'PROXY TCP6 ::1 ::2 10 20\r\n'
        assert self.pp.pack(ProxyResultUnknown()) == b'PROXY UNKNOWN    \r\n'
        with pytest.raises(KeyError):
            self.pp.pack(UNIX)
        with pytest.raises(ValueError):
            self.pp.pack(ProxyResultLocal())

    def test_build(self) -> None:
        assert self.pp.build(('1.2.3.4', 10), ('5.6.7.8', 20),
                             family=AF_INET) == \
            b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n'
        assert self.pp.build(('::1', 10, 0, 0), ('::2', 20, 0, 0),
                             family=AF_INET6) == b'PROXY TCP6 ::1 ::2 10 20\r\n'
        assert self.pp.build(None, None, family=AF_UNSPEC) == \
            b'PROXY UNKNOWN    \r\n'
        with pytest.raises(KeyError):
            self.pp.build('source', 'dest', family=AF_UNIX)
        with pytest.raises(ValueError):
            self.pp.build(None, None, family=AF_UNSPEC, proxied=False)

    def test_build_never_writes_an_invalid_line(self) -> None:
        # Addresses that do not fit the family are refused or promoted.
        with pytest.raises(ValueError):
            self.pp.build(('::1', 1, 0, 0), ('::2', 2, 0, 0), family=AF_INET)
        with pytest.raises(ValueError):
            self.pp.build(('localhost', 1), ('1.2.3.4', 2), family=AF_INET)
        with pytest.raises(ValueError):
            self.pp.build('/path', '/path', family=AF_INET)
        line = self.pp.build(('1.2.3.4', 1), ('5.6.7.8', 2), family=AF_INET6)
        assert self.pp.unpack(line).source == \
            (IPv6Address('::ffff:1.2.3.4'), 1)

    def test_read(self) -> None:
        line = b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n'
        result, rest = run(read_with(self.pp, line + b'data'))
        assert result.source == V4.source
        assert rest == b'data'                   # nothing read past the line
        result, rest = run(read_with(self.pp, line[6:] + b'x',
                                     signature=line[:6]))
        assert result.dest == V4.dest and rest == b'x'

    def test_read_eof_and_reset(self) -> None:
        result, _ = run(read_with(self.pp, b'PROXY TCP4 1.2'))
        assert isinstance(result, ProxyResultUnknown)
        assert isinstance(result.exception, asyncio.IncompleteReadError)
        result, _ = run(read_with(self.pp, b'PROXY', exc=ConnectionResetError()))
        assert isinstance(result, ProxyResultUnknown)
        assert isinstance(result.exception, ConnectionResetError)

    def test_read_rejects(self) -> None:
        with pytest.raises(ProxyProtocolError):
            run(read_with(self.pp, b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'))


class TestV2:
    pp = ProxyProtocolV2()

    def test_is_valid(self) -> None:
        assert self.pp.is_valid(SIG[:8])
        assert self.pp.is_valid(SIG + b'\x21')
        assert not self.pp.is_valid(SIG[:7])
        assert not self.pp.is_valid(b'PROXY TC')

    def test_header_object_0_4(self) -> None:
        header = ProxyProtocolV2Header(command='proxy', family=AF_INET,
                                       protocol=SOCK_STREAM, addr_len=12)
        assert (header.command, header.family, header.protocol,
                header.addr_len) == ('proxy', AF_INET, SOCK_STREAM, 12)
        assert header.type is ProxyResultType.IPv4
        assert header.data_len == 12
        header = ProxyProtocolV2Header('local', AF_UNSPEC, None, 0)
        assert header.type is ProxyResultType.UNKNOWN
        assert header.family == AF_UNSPEC

    def test_header_object_0_11(self) -> None:
        header = ProxyProtocolV2Header(command='proxy',
                                       type=ProxyResultType.IPv6,
                                       protocol=SOCK_DGRAM, data_len=36)
        assert header.family == AF_INET6 and header.addr_len == 36
        header = ProxyProtocolV2Header('proxy', ProxyResultType.UNIX, None, 1)
        assert header.family == AF_UNIX and header.data_len == 1
        header = ProxyProtocolV2Header()
        assert (header.command, header.type, header.family, header.protocol,
                header.data_len) == (None, None, None, None, 0)
        assert repr(header) == ('ProxyProtocolV2Header(command=None, '
                                'type=None, protocol=None, data_len=0)')

    def test_unpack_header(self) -> None:
        data = SIG + h('21 21 f0f0')
        for method in (self.pp.unpack_header, self.pp.parse_header):
            header = method(data)
            assert header.command == 'proxy'
            assert header.family == AF_INET6
            assert header.type is ProxyResultType.IPv6
            assert header.protocol == SOCK_STREAM
            assert header.addr_len == header.data_len == 61680
        header = self.pp.unpack_header(SIG + h('20 00 0000'))
        assert header.command == 'local' and header.protocol is None
        with pytest.raises(ProxyProtocolError):
            self.pp.parse_header(SIG[:11] + b'x' + h('21 11 000c'))
        with pytest.raises(ProxyProtocolSyntaxError):
            self.pp.unpack_header(SIG + h('31 11 000c'))
        with pytest.raises(ProxyProtocolSyntaxError):
            self.pp.unpack_header(SIG + h('21'))     # fewer than 16 bytes
        with pytest.raises(ProxyProtocolSyntaxError):
            self.pp.unpack_header(b'PROXY')

    def test_unpack_incomplete(self) -> None:
        assert incomplete(self.pp, SIG[:3]) == NeedMore(13)
        assert incomplete(self.pp, SIG + h('21 21 f0f0')) == NeedMore(61680)
        assert incomplete(self.pp, SIG + h('21 11 000c 01')) == NeedMore(11)
        assert incomplete(self.pp, b'') == NeedMore(16)

    def test_unpack(self) -> None:
        for vector in VALID_V2 + PACKED_0_11:
            assert self.pp.unpack(vector.wire + b'extra') == vector.result
        with pytest.raises(ProxyProtocolChecksumError):
            self.pp.unpack(PACKED_0_11[0].wire[:-1] + b'\x00')
        small = ProxyProtocolV2(max_length=20)
        assert small.max_length == 20
        with pytest.raises(ProxyProtocolSyntaxError):
            small.unpack(VALID_V2[0].wire)

    def test_unpack_data(self) -> None:
        vector = next(v for v in VALID_V2 if v.name == 'tcp4-every-plain-tlv')
        header = self.pp.unpack_header(vector.wire)
        result = self.pp.unpack_data(header, vector.wire[:16],
                                     vector.wire[16:])
        assert result == vector.result
        # Without the fixed bytes the header object describes them.
        assert self.pp.unpack_data(header, b'', vector.wire[16:]) == \
            vector.result
        assert self.pp.parse_addresses(vector.wire[16:], header) == \
            vector.result

    def test_parse_addresses_from_header_objects(self) -> None:
        # 0.4 callers build the header object themselves.
        block = h('01020304 05060708 000a 0014')
        header = ProxyProtocolV2Header(command='proxy', family=AF_INET,
                                       protocol=None, addr_len=12)
        assert self.pp.parse_addresses(block, header) == V4
        header = ProxyProtocolV2Header(command='proxy', family=AF_INET,
                                       protocol=SOCK_STREAM, addr_len=12)
        assert self.pp.parse_addresses(block, header).protocol == SOCK_STREAM
        local = ProxyProtocolV2Header(command='local', family=AF_INET,
                                      protocol=None, addr_len=12)
        assert self.pp.parse_addresses(block, local) == ProxyResultLocal()
        unspec = ProxyProtocolV2Header(command='proxy', family=AF_UNSPEC,
                                       protocol=None, addr_len=0)
        assert self.pp.parse_addresses(b'', unspec) == ProxyResultUnknown()
        bad = ProxyProtocolV2Header(command=None, family=AF_INET,
                                    protocol=None, addr_len=12)
        with pytest.raises(ProxyProtocolSyntaxError):
            self.pp.parse_addresses(block, bad)
        # TLVs after the block no longer crash (0.4 raised struct.error).
        with_tlv = block + h('05 0002 6964')
        assert self.pp.parse_addresses(with_tlv, header).tlv.unique_id == \
            b'id'
        with pytest.raises(ProxyProtocolSyntaxError):
            self.pp.parse_addresses(block[:11], header)

    @pytest.mark.parametrize('vector', PACKED_0_11, ids=lambda v: v.name)
    def test_pack_0_11_outputs(self, vector: Any) -> None:
        base = vector.result
        without_crc = ProxyProtocolTLV.from_entries(
            [e for e in base.tlv.entries if e[0] != 0x03])
        if isinstance(base, ProxyResultIPv4):
            result: ProxyResult = ProxyResultIPv4(
                base.source, base.dest, protocol=base.protocol,
                tlv=without_crc)
        elif isinstance(base, ProxyResultLocal):
            result = ProxyResultLocal()
        else:
            result = ProxyResultUnknown()
        assert self.pp.pack(result) == vector.wire

    def test_pack_sorted_one_per_type_with_crc(self) -> None:
        tlv = ProxyProtocolTLV.from_entries([(0x30, b'n'), (0x01, b'a'),
                                             (0x01, b'b'), (0x03, h('ffffffff'))])
        packed = self.pp.pack(ProxyResultIPv6(V6.source, V6.dest, tlv=tlv))
        result = self.pp.unpack(packed)
        assert [t for t, _ in result.tlv.entries] == [0x01, 0x03, 0x30]
        assert result.tlv.alpn == b'b'
        for result in (UNIX, ProxyResultUnix('/a', '/b', protocol=SOCK_DGRAM)):
            assert self.pp.unpack(self.pp.pack(result)) == ProxyResultUnix(
                result.source, result.dest, protocol=result.protocol,
                tlv=self.pp.unpack(self.pp.pack(result)).tlv)

    def test_pack_errors(self) -> None:
        big = ProxyProtocolTLV.from_entries([(0x04, bytes(0xFFFF - 3))])
        with pytest.raises(ValueError):
            self.pp.pack(ProxyResultLocal(tlv=big))
        with pytest.raises(ValueError):
            self.pp.pack(ProxyResultUnix('x' * 200, ''))

    def test_build(self) -> None:
        header = self.pp.build(('0.0.0.0', 0), ('127.0.0.1', 25),
                               family=AF_INET, protocol=SOCK_STREAM)
        assert header == SIG + h('21 11 000c | 00000000 7f000001 0000 0019')
        header = self.pp.build(('::1', 0, 0, 0), ('::1', 25, 0, 0),
                               family=AF_INET6, protocol=SOCK_STREAM)
        assert header[12:16] == h('21 21 0024') and len(header) == 52
        header = self.pp.build('abc', 'defghi', family=AF_UNIX,
                               protocol=SOCK_STREAM)
        assert header[12:16] == h('21 31 00d8') and len(header) == 232
        assert header[16:19] == b'abc' and header[124:130] == b'defghi'
        assert self.pp.build(None, None, family=AF_UNSPEC) == \
            SIG + h('21 00 0000')
        assert self.pp.build(None, None, family=AF_UNSPEC, proxied=False) == \
            SIG + h('20 00 0000')
        assert self.pp.build(('1.2.3.4', 1), ('5.6.7.8', 2), family=AF_INET,
                             protocol=SOCK_DGRAM)[13] == 0x12

    def test_build_errors(self) -> None:
        with pytest.raises(KeyError):
            self.pp.build(None, None, family=socket.AddressFamily(17))
        with pytest.raises(KeyError):
            self.pp.build(('1.2.3.4', 1), ('5.6.7.8', 2), family=AF_INET,
                          protocol=socket.SOCK_RAW)
        with pytest.raises(KeyError):
            self.pp.build_header(b'', family=AF_INET,
                                 protocol=socket.SOCK_RAW)
        with pytest.raises(ValueError):
            self.pp.build(('::1', 1, 0, 0), ('::2', 2, 0, 0), family=AF_INET)
        # IPv4 addresses on an AF_INET6 socket are sent IPv4-mapped.
        header = self.pp.build(('1.2.3.4', 1), ('5.6.7.8', 2),
                               family=AF_INET6)
        assert self.pp.unpack(header).source == \
            (IPv6Address('::ffff:1.2.3.4'), 1)

    def test_build_parts(self) -> None:
        assert self.pp.build_header(bytes(12), family=AF_INET) == \
            SIG + h('21 10 000c')
        assert self.pp.build_header(b'', family=AF_UNSPEC, proxied=False) == \
            SIG + h('20 00 0000')
        assert self.pp.build_addresses(None, None, family=AF_UNSPEC) == b''
        assert self.pp.build_addresses(('1.2.3.4', 10), ('5.6.7.8', 20),
                                       family=AF_INET) == \
            h('01020304 05060708 000a 0014')

    def test_read(self) -> None:
        data = PACKED_0_11[0].wire
        result, rest = run(read_with(self.pp, data + b'after'))
        assert result == PACKED_0_11[0].result and rest == b'after'
        result, rest = run(read_with(self.pp, data[8:], signature=data[:8]))
        assert result == PACKED_0_11[0].result and rest == b''
        for end in (5, 16, 20):
            result, _ = run(read_with(self.pp, data[:end]))
            assert isinstance(result, ProxyResultUnknown)
            assert isinstance(result.exception, EOFError)


class TestDetect:
    def test_versions(self) -> None:
        pp = ProxyProtocolDetect()
        assert isinstance(pp.versions, list)
        assert [type(v) for v in pp.versions] == [ProxyProtocolV2,
                                                  ProxyProtocolV1]
        v1 = ProxyProtocolV1()
        assert ProxyProtocolDetect(v1).versions == (v1,)
        assert repr(pp) == 'ProxyProtocolDetect()'

    def test_is_valid_and_choose(self) -> None:
        pp = ProxyProtocolDetect()
        assert pp.is_valid(b'PROXY TC') and pp.is_valid(SIG[:8])
        assert not pp.is_valid(b'GET / HT')
        assert isinstance(pp.choose_version(b'PROXY TC'), ProxyProtocolV1)
        assert isinstance(pp.choose_version(SIG[:8]), ProxyProtocolV2)
        for bad in (b'PROXY', b'\r\n\r\n\x00\r\n', b'badPROXY ...'):
            with pytest.raises(ProxyProtocolSyntaxError):
                pp.choose_version(bad)
            with pytest.raises(ProxyProtocolError):
                pp.choose_version(bad)

    def test_unpack(self) -> None:
        pp = ProxyProtocolDetect()
        assert pp.unpack(PACKED_0_11[0].wire) == PACKED_0_11[0].result
        assert pp.unpack(b'PROXY UNKNOWN\r\n') == ProxyResultUnknown()
        assert incomplete(pp, b'PRO') == NeedMore(5)
        assert incomplete(pp, b'PROXY TCP4') == NeedMore(want_line=True)
        only_v1 = ProxyProtocolDetect(ProxyProtocolV1())
        assert incomplete(only_v1, b'PROXY') == NeedMore(3)
        assert only_v1.unpack(b'PROXY UNKNOWN\r\n') == ProxyResultUnknown()
        with pytest.raises(ProxyProtocolSyntaxError):
            only_v1.unpack(PACKED_0_11[0].wire)
        with pytest.raises(ProxyProtocolSyntaxError):
            pp.unpack(b'GET / HTTP/1.1\r\n')

    def test_pack_and_build_order(self) -> None:
        pp = ProxyProtocolDetect()
        # 0.11 packed with v2 first...
        assert pp.pack(V4).startswith(SIG)
        assert pp.pack(UNIX).startswith(SIG)
        # ... 0.4 built with v1 first.
        assert pp.build(('1.2.3.4', 10), ('5.6.7.8', 20), family=AF_INET) == \
            b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n'
        assert pp.build('/a', '/b', family=AF_UNIX).startswith(SIG)
        custom = ProxyProtocolDetect(ProxyProtocolV2(), ProxyProtocolV1())
        assert custom.build(('1.2.3.4', 10), ('5.6.7.8', 20),
                            family=AF_INET).startswith(SIG)
        only_v1 = ProxyProtocolDetect(ProxyProtocolV1())
        assert only_v1.pack(V4) == b'PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n'
        with pytest.raises(ValueError) as info:
            only_v1.pack(UNIX)
        assert str(info.value) == 'Could not build PROXY protocol header'
        with pytest.raises(ValueError):
            only_v1.build(None, None, family=AF_UNSPEC, proxied=False)

    def test_other_errors_propagate(self) -> None:
        class Broken(ProxyProtocolV1):
            def pack(self, result: ProxyResult) -> bytes:
                raise RuntimeError('broken')

        with pytest.raises(RuntimeError):
            ProxyProtocolDetect(Broken(), ProxyProtocolV2()).pack(V4)

    def test_read(self) -> None:
        pp = ProxyProtocolDetect()
        result, rest = run(read_with(pp, b'PROXY UNKNOWN\r\nxyz'))
        assert result == ProxyResultUnknown() and rest == b'xyz'
        result, rest = run(read_with(pp, PACKED_0_11[1].wire + b'z'))
        assert result == PACKED_0_11[1].result and rest == b'z'
        result, _ = run(read_with(pp, b'PROX'))
        assert isinstance(result.exception, EOFError)  # type: ignore
        with pytest.raises(ProxyProtocolError):
            run(read_with(pp, b'GET / HTTP/1.1\r\n'))


class TestNoop:
    pp = ProxyProtocolNoop()

    def test_methods(self) -> None:
        with pytest.raises(NotImplementedError):
            self.pp.is_valid(b'PROXY TC')
        with pytest.raises(NotImplementedError):
            ProxyProtocolDetect(self.pp).is_valid(b'PROXY TC')
        assert self.pp.unpack(b'anything') == ProxyResultLocal()
        assert self.pp.pack(V4) == b''
        assert self.pp.build(None, None, family=AF_UNSPEC) == b''

    def test_read_reads_nothing(self) -> None:
        result, rest = run(read_with(self.pp, b'PROXY UNKNOWN\r\n'))
        assert result == ProxyResultLocal()
        assert rest == b'PROXY UNKNOWN\r\n'


class TestVersion:
    def test_members(self) -> None:
        assert [m.name for m in ProxyProtocolVersion] == \
            ['NOOP', 'DETECT', 'V1', 'V2']
        assert isinstance(ProxyProtocolVersion.NOOP.value, ProxyProtocolNoop)
        assert isinstance(ProxyProtocolVersion.DETECT.value,
                          ProxyProtocolDetect)
        assert isinstance(ProxyProtocolVersion.V1.value, ProxyProtocolV1)
        assert isinstance(ProxyProtocolVersion.V2.value, ProxyProtocolV2)

    def test_get(self) -> None:
        assert ProxyProtocolVersion.get() is ProxyProtocolVersion.NOOP.value
        assert ProxyProtocolVersion.get('') is ProxyProtocolVersion.NOOP.value
        assert ProxyProtocolVersion.get('v2') is ProxyProtocolVersion.V2.value
        assert ProxyProtocolVersion.get('Detect') is \
            ProxyProtocolVersion.DETECT.value
        with pytest.raises(KeyError):
            ProxyProtocolVersion.get('bogus')


class TestBase:
    """Subclasses written against either API remain usable."""

    def test_only_is_valid_is_abstract(self) -> None:
        class Minimal(ProxyProtocol):
            def is_valid(self, signature: Union[bytes, bytearray,
                                                memoryview]) -> bool:
                return False

        pp = Minimal()
        with pytest.raises(NotImplementedError):
            pp.unpack(b'')
        with pytest.raises(NotImplementedError):
            pp.pack(V4)
        with pytest.raises(NotImplementedError):
            pp.build(None, None, family=AF_UNSPEC)
        with pytest.raises(NotImplementedError):
            run(read_with(pp, b''))
        with pytest.raises(TypeError):
            ProxyProtocol()  # type: ignore[abstract]

    def test_build_uses_pack(self) -> None:
        class PackOnly(ProxyProtocol):
            def is_valid(self, signature: Union[bytes, bytearray,
                                                memoryview]) -> bool:
                return True

            def pack(self, result: ProxyResult) -> bytes:
                return repr(result).encode()

        assert PackOnly().build(('1.2.3.4', 10), ('5.6.7.8', 20),
                                family=AF_INET) == repr(V4).encode()
