"""The v1 (text) reader: spec section 2.1, strictly, and incrementally."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from socket import SOCK_STREAM
from typing import Callable, Union

import pytest

from proxyprotocol import (NeedMore, ParsedHeader, ProxyProtocolError,
                           ProxyProtocolSyntaxError, ProxyProtocolTooLongError,
                           parse_header)
from proxyprotocol.result import ProxyResultIPv4, ProxyResultUnknown
from proxyprotocol.v1 import (MAX_V1_LENGTH, V1_SIGNATURE, ProxyProtocolV1,
                              unpack_v1)
from vectors.golden import INVALID_V1, VALID_V1, Invalid, Valid

Buffer = Union[bytes, bytearray, memoryview]
BUFFERS: list[Callable[[bytes], Buffer]] = [bytes, bytearray, memoryview]


def _parsed(data: Buffer) -> ParsedHeader:
    parsed = parse_header(data)
    assert isinstance(parsed, ParsedHeader), parsed
    return parsed


@pytest.mark.parametrize('vector', VALID_V1, ids=lambda v: v.name)
@pytest.mark.parametrize('buffer', BUFFERS)
def test_golden_valid(vector: Valid, buffer: Callable[[bytes], Buffer]
                      ) -> None:
    parsed = _parsed(buffer(vector.wire))
    assert parsed.version == 1
    assert parsed.length == len(vector.wire)
    assert parsed.result == vector.result
    assert not parsed.result.tlv


@pytest.mark.parametrize('vector', VALID_V1, ids=lambda v: v.name)
@pytest.mark.parametrize('trailing', [b'\r\n', b'GET / HTTP/1.1\r\n\r\n',
                                      b'\x00' * 500, b'PROXY UNKNOWN\r\n'])
def test_length_is_exact_with_trailing_bytes(vector: Valid,
                                             trailing: bytes) -> None:
    data = bytearray(vector.wire + trailing)
    before = bytes(data)
    parsed = _parsed(memoryview(data))
    assert parsed.length == len(vector.wire)
    assert bytes(data[parsed.length:]) == trailing
    assert bytes(data) == before  # the caller's buffer is left untouched


@pytest.mark.parametrize('vector', VALID_V1, ids=lambda v: v.name)
def test_every_prefix_asks_for_more(vector: Valid) -> None:
    wire = vector.wire
    for end in range(len(wire)):
        outcome = parse_header(wire[:end])
        if end < 8:
            # Detection reads the first 8 bytes before choosing a version.
            assert outcome == NeedMore(8 - end)
        else:
            assert outcome == NeedMore(want_line=True)
            assert isinstance(outcome, NeedMore)
            assert outcome.want_bytes is None and outcome.want_line


@pytest.mark.parametrize('vector', INVALID_V1, ids=lambda v: v.name)
@pytest.mark.parametrize('buffer', BUFFERS)
def test_golden_invalid(vector: Invalid, buffer: Callable[[bytes], Buffer]
                        ) -> None:
    with pytest.raises(vector.error) as info:
        parse_header(buffer(vector.wire))
    exc = info.value
    assert isinstance(exc, ProxyProtocolError)
    assert isinstance(exc, ValueError)
    assert exc.field == vector.field
    assert isinstance(exc.offset, int) and 0 <= exc.offset <= len(vector.wire)
    assert str(exc).endswith(f'(field {exc.field}, offset {exc.offset})')


# Each input is rejected at its last byte: one byte earlier it could still
# have become a valid header.
REJECTED_AT_LAST_BYTE = [
    (b'PROXY  ', 'v1.family'),
    (b'PROXY X', 'v1.family'),
    (b'PROXY \r', 'v1.family'),
    (b'PROXY \n', 'v1.crlf'),
    (b'PROXYX', 'signature'),
    (b'PROXY TCP5', 'v1.family'),
    (b'PROXY TCP44', 'v1.family'),
    (b'PROXY UNKNOWNX', 'v1.family'),
    (b'PROXY TCP4 00', 'v1.source'),
    (b'PROXY TCP4 256', 'v1.source'),
    (b'PROXY TCP4 1234', 'v1.source'),
    (b'PROXY TCP4 1.2.3.4.', 'v1.source'),
    (b'PROXY TCP4 1..', 'v1.source'),
    (b'PROXY TCP4 1.2.3.a', 'v1.source'),
    (b'PROXY TCP4 1.2.3.4 :', 'v1.dest'),
    (b'PROXY TCP4 1.2.3.4\r', 'v1.dest'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 01', 'v1.source_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 65536', 'v1.source_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 123456', 'v1.source_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 +', 'v1.source_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1  ', 'v1.dest_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ', 'v1'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', 'v1.dest_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r', 'v1.dest_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 'v1.crlf'),
    (b'PROXY TCP6 fe80::1%', 'v1.source'),
    (b'PROXY TCP6 ::1 ::g', 'v1.dest'),
    (b'PROXY TCP6 1:2:3:4:5:6:7:8:', 'v1.source'),
    (b'PROXY TCP6 ::1 ::2 1 2\n', 'v1.crlf'),
    (b'PROXY UNKNOWN ' + b'x' * 93, 'v1.crlf'),
]


@pytest.mark.parametrize('data, field', REJECTED_AT_LAST_BYTE)
def test_rejected_at_once(data: bytes, field: str) -> None:
    assert isinstance(parse_header(data[:-1]), NeedMore)
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(data)
    assert info.value.field == field


@pytest.mark.parametrize('data', [b'PROXY TCP6 12345', b'PROXY TCP6 1:::',
                                  b'PROXY TCP6 ::1::', b'PROXY TCP6 ::1.2.3.4.'])
def test_tcp6_address_prefix_rejected_at_once(data: bytes) -> None:
    assert isinstance(parse_header(data[:-1]), NeedMore)
    with pytest.raises(ProxyProtocolSyntaxError):
        parse_header(data)


def test_line_length_limit() -> None:
    # Spec 2.1: 107 bytes, CRLF included, is the worst case to support.
    longest = b'PROXY UNKNOWN ' + b'f' * 91 + b'\r\n'
    assert len(longest) == MAX_V1_LENGTH
    assert _parsed(longest).length == MAX_V1_LENGTH
    # 106 bytes without LF can still become a 107-byte line...
    assert parse_header(longest[:-1]) == NeedMore(want_line=True)
    # ... but 107 bytes without LF cannot.
    with pytest.raises(ProxyProtocolTooLongError) as info:
        parse_header(longest[:-2] + b' \r')
    assert info.value.field == 'v1.crlf'
    assert info.value.offset == MAX_V1_LENGTH
    # A 108-byte line is refused even though its CRLF arrives.
    with pytest.raises(ProxyProtocolTooLongError):
        parse_header(b'PROXY UNKNOWN ' + b'f' * 92 + b'\r\n')
    # The limit is on the line only: what follows may be any length.
    assert _parsed(longest + b'x' * 10000).length == MAX_V1_LENGTH


def test_too_long_is_a_syntax_error() -> None:
    assert issubclass(ProxyProtocolTooLongError, ProxyProtocolSyntaxError)


def test_unknown_forms() -> None:
    for line in (b'PROXY UNKNOWN\r\n', b'PROXY UNKNOWN \r\n',
                 b'PROXY UNKNOWN    \r\n',
                 b'PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n',
                 b'PROXY UNKNOWN \xff\xfe garbage\r\n',
                 b'PROXY UNKNOWN\r\r\n'):
        parsed = _parsed(line)
        assert parsed.result == ProxyResultUnknown()
        assert parsed.result.proxied
        assert parsed.length == len(line)
    # The short form waits for its line like any other.
    assert parse_header(b'PROXY UNKNOWN') == NeedMore(want_line=True)
    assert parse_header(b'PROXY UNKNOWN\r') == NeedMore(want_line=True)
    assert parse_header(b'PROXY UNKNOWN ') == NeedMore(want_line=True)


def test_result_fields_tcp4() -> None:
    result = _parsed(b'PROXY TCP4 192.0.2.1 198.51.100.2 54321 443\r\n').result
    assert isinstance(result, ProxyResultIPv4)
    assert result.source == (IPv4Address('192.0.2.1'), 54321)
    assert result.dest == (IPv4Address('198.51.100.2'), 443)
    assert result.source_ip == IPv4Address('192.0.2.1')
    assert result.dest_port == 443
    assert result.peername == ('192.0.2.1', 54321)
    assert result.sockname == ('198.51.100.2', 443)
    assert result.protocol == SOCK_STREAM


def test_result_fields_tcp6() -> None:
    result = _parsed(b'PROXY TCP6 2001:DB8::1 ::1 1 65535\r\n').result
    assert result.source == (IPv6Address('2001:db8::1'), 1)
    assert result.dest == (IPv6Address('::1'), 65535)
    assert result.peername == ('2001:db8::1', 1, 0, 0)
    assert result.sockname == ('::1', 65535, 0, 0)


@pytest.mark.parametrize('line, field', [
    # The fast TCP4 path matches the shape but not the range.
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n', 'v1.source_port'),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n', 'v1.dest_port'),
    # TCP6 addresses that parse, ports that do not.
    (b'PROXY TCP6 ::1 ::2 70000 1\r\n', 'v1.source_port'),
    (b'PROXY TCP6 ::1 ::2 1 99999\r\n', 'v1.dest_port'),
    # TCP6 text in the right alphabet that is not an address.
    (b'PROXY TCP6 ::1 12345::1 1 2\r\n', 'v1.dest'),
    (b'PROXY TCP6 1.2.3.4.5 ::1 1 2\r\n', 'v1.source'),
    (b'PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n', 'v1.source'),
    (b'PROXY TCP6 : ::1 1 2\r\n', 'v1.source'),
])
def test_complete_line_field_errors(line: bytes, field: str) -> None:
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(line)
    assert info.value.field == field


def test_only_v2_allowed_rejects_v1() -> None:
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n', versions=(2,))
    assert info.value.field == 'signature'
    assert _parsed(VALID_V1[0].wire).version == 1
    assert isinstance(parse_header(VALID_V1[0].wire, versions=[1]),
                      ParsedHeader)


class TestUnpackV1:
    """The v1 reader alone, without detection."""

    def test_complete(self) -> None:
        parsed = unpack_v1(bytearray(b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nxy'))
        assert isinstance(parsed, tuple)
        result, length = parsed
        assert length == 32
        assert result.source == (IPv4Address('1.2.3.4'), 1)

    @pytest.mark.parametrize('data', [b'', b'P', b'PROXY', b'PROXY ',
                                      b'PROXY T', b'PROXY TCP4 1.2.'])
    def test_short_prefixes_want_a_line(self, data: bytes) -> None:
        assert unpack_v1(data) == NeedMore(want_line=True)

    @pytest.mark.parametrize('data, field', [
        (b'X', 'v1.signature'), (b'PROXY\r\n', 'v1.family'),
        (b'PROXYZ', 'v1.signature'), (b'\r\n', 'v1.signature'),
        (b'\n', 'v1.crlf'), (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3 4', 'v1'),
    ])
    def test_rejects(self, data: bytes, field: str) -> None:
        with pytest.raises(ProxyProtocolSyntaxError) as info:
            unpack_v1(data)
        assert info.value.field == field

    def test_signature_constant(self) -> None:
        assert V1_SIGNATURE == b'PROXY '
        assert MAX_V1_LENGTH == 107


@pytest.mark.parametrize('line', [
    b'PROXY TCP6 ::1::2 ::1 1 2\r\n',        # two "::"
    b'PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n',  # nine groups
    b'PROXY TCP6 ::1 :::: 1 2\r\n',
])
def test_legacy_unpack_rejects_invalid_tcp6_address(line: bytes) -> None:
    # The 0.11 unpack() reads TCP6 lines on a path of its own.
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        ProxyProtocolV1().unpack(line)
    assert info.value.field in ('v1.source', 'v1.dest')
