"""HeaderParser (bytes arriving in pieces) and per-datagram parsing."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from socket import SOCK_DGRAM
from typing import Union

import pytest

from proxyprotocol import (HeaderParser, NeedMore, ParsedHeader,
                           ProxyProtocolChecksumError, ProxyProtocolError,
                           ProxyProtocolSyntaxError, ProxyProtocolTooLongError,
                           build_datagram, parse_datagram, parse_header)
from proxyprotocol.result import (ProxyResult, ProxyResultIPv4,
                                  ProxyResultIPv6, ProxyResultLocal)
from proxyprotocol.tlv import ProxyProtocolTLV
from vectors.golden import (INVALID_V1, INVALID_V2, SIG, VALID_V1, VALID_V2,
                            Invalid, Valid, h)

Outcome = Union[ParsedHeader, NeedMore, ProxyProtocolError]
TRAILING = b'\x16\x03\x01 then the application data \r\n\x00'


def outcome_of(call: object) -> Outcome:
    """What ``call()`` returns, or the ProxyProtocolError it raises."""
    assert callable(call)
    try:
        result: Outcome = call()
    except ProxyProtocolError as exc:
        return exc
    return result


def same(a: Outcome, b: Outcome) -> bool:
    if isinstance(a, ProxyProtocolError) or isinstance(b, ProxyProtocolError):
        return type(a) is type(b) and a.field == b.field  # type: ignore
    return a == b


@pytest.mark.parametrize('vector', VALID_V1 + VALID_V2, ids=lambda v: v.name)
def test_one_byte_at_a_time(vector: Valid) -> None:
    data = vector.wire + TRAILING
    parser = HeaderParser()
    assert parser.header is None
    for i in range(len(vector.wire)):
        step = parser.feed(data[i:i + 1])
        expected = parse_header(data[:i + 1])
        assert step == expected
        if i + 1 < len(vector.wire):
            assert isinstance(step, NeedMore)
            assert parser.header is None
            assert parser.trailing_data == b''
            assert parser.buffered == i + 1
    assert isinstance(step, ParsedHeader)
    assert step.result == vector.result
    assert step.length == len(vector.wire)
    assert parser.header == step
    assert parser.trailing_data == b''
    for i in range(len(vector.wire), len(data)):
        assert parser.feed(data[i:i + 1]) is step
    assert parser.trailing_data == TRAILING
    assert parser.buffered == len(TRAILING)


@pytest.mark.parametrize('vector', VALID_V1 + VALID_V2, ids=lambda v: v.name)
def test_every_two_piece_split(vector: Valid) -> None:
    data = vector.wire + TRAILING
    for cut in range(len(data) + 1):
        parser = HeaderParser()
        first = parser.feed(bytearray(data[:cut]))
        if cut >= len(vector.wire):
            assert isinstance(first, ParsedHeader)
            assert parser.trailing_data == data[len(vector.wire):cut]
        second = parser.feed(memoryview(data)[cut:])
        assert isinstance(second, ParsedHeader)
        assert second.result == vector.result
        assert second.length == len(vector.wire)
        assert parser.trailing_data == TRAILING


@pytest.mark.parametrize('vector', INVALID_V1 + INVALID_V2,
                         ids=lambda v: v.name)
def test_invalid_one_byte_at_a_time(vector: Invalid) -> None:
    # Each step answers what one call on the bytes so far answers; the
    # first rejection ends it, at the latest on the last byte.
    parser = HeaderParser()
    for i in range(len(vector.wire)):
        step = outcome_of(lambda: parser.feed(vector.wire[i:i + 1]))
        assert same(step, outcome_of(lambda: parse_header(vector.wire[:i + 1])))
        if isinstance(step, ProxyProtocolError):
            break
    assert isinstance(step, ProxyProtocolError)
    assert isinstance(outcome_of(lambda: parse_header(vector.wire)),
                      vector.error)


@pytest.mark.parametrize('data, at', [
    (SIG + b'\x31', 13),                       # version 3
    (SIG + b'\x21\x51', 14),                   # family 5
    (b'\r\x00', 2),                            # not the signature
    (b'PROXY TCP5', 10),
    (b'GET ', 1),
    (b'PROXY  ', 7),
])
def test_rejected_as_soon_as_fed(data: bytes, at: int) -> None:
    parser = HeaderParser()
    for i in range(at - 1):
        assert isinstance(parser.feed(data[i:i + 1]), NeedMore)
    with pytest.raises(ProxyProtocolSyntaxError):
        parser.feed(data[at - 1:at])


def test_v2_body_waits_without_reparsing() -> None:
    vector = next(v for v in VALID_V2 if v.name == 'tcp4-every-plain-tlv')
    parser = HeaderParser()
    assert parser.feed(vector.wire[:16]) == NeedMore(len(vector.wire) - 16)
    assert parser.feed(vector.wire[16:20]) == NeedMore(len(vector.wire) - 20)
    assert parser.buffered == 20
    parsed = parser.feed(vector.wire[20:])
    assert isinstance(parsed, ParsedHeader)


def test_options() -> None:
    parser = HeaderParser(versions=(1,))
    with pytest.raises(ProxyProtocolSyntaxError):
        parser.feed(SIG)
    big = SIG + b'\x21\x00\x40\x00'
    with pytest.raises(ProxyProtocolTooLongError):
        HeaderParser().feed(big)
    parser = HeaderParser(max_length=70000)
    assert parser.feed(big) == NeedMore(0x4000)


def test_empty_feeds() -> None:
    parser = HeaderParser()
    assert parser.feed(b'') == NeedMore(8)
    assert parser.feed(b'PROXY UNKNOWN\r') == NeedMore(want_line=True)
    assert parser.feed(b'') == NeedMore(want_line=True)
    parsed = parser.feed(b'\n')
    assert isinstance(parsed, ParsedHeader)
    assert parser.feed(b'') is parsed
    assert parser.trailing_data == b''


def test_parsed_header_value() -> None:
    a = parse_header(b'PROXY UNKNOWN\r\n')
    b = HeaderParser().feed(b'PROXY UNKNOWN\r\nmore')
    assert isinstance(a, ParsedHeader) and isinstance(b, ParsedHeader)
    assert a == b and hash(a) == hash(b)
    assert a != parse_header(b'PROXY UNKNOWN \r\n')   # another length
    assert a.__eq__('x') is NotImplemented
    assert repr(a) == ('ParsedHeader(result=ProxyResultUnknown(), '
                       'length=15, version=1)')
    with pytest.raises(AttributeError):
        a.length = 3  # type: ignore[misc]


def test_trailing_data_is_a_copy() -> None:
    parser = HeaderParser()
    parser.feed(b'PROXY UNKNOWN\r\nabc')
    data = parser.trailing_data
    assert isinstance(data, bytes)
    parser.feed(b'def')
    assert data == b'abc'
    assert parser.trailing_data == b'abcdef'


class TestDatagram:
    """UDP: header and payload in one datagram, parsed independently."""

    RESULT = ProxyResultIPv4((IPv4Address('192.0.2.1'), 5353),
                             (IPv4Address('192.0.2.2'), 53),
                             protocol=SOCK_DGRAM)

    @pytest.mark.parametrize('crc', [False, True])
    def test_round_trip_zero_copy(self, crc: bool) -> None:
        payload = b'\x12\x34 dns query'
        datagram = build_datagram(self.RESULT, payload, crc32c=crc)
        parsed, view = parse_datagram(datagram)
        assert parsed.result.source == self.RESULT.source
        assert parsed.result.protocol == SOCK_DGRAM
        assert parsed.version == 2
        assert parsed.length == len(datagram) - len(payload)
        assert isinstance(view, memoryview)
        assert view.obj is datagram            # a view, not a copy
        assert view.tobytes() == payload
        assert (parsed.result.tlv.crc32c is not None) == crc

    def test_bytearray_and_memoryview(self) -> None:
        datagram = bytearray(build_datagram(self.RESULT, b'abc'))
        parsed, view = parse_datagram(datagram)
        assert view.obj is datagram
        datagram[-1:] = b'z'                   # the view sees the buffer
        assert view.tobytes() == b'abz'
        outer = memoryview(datagram)
        parsed2, view2 = parse_datagram(outer)
        assert view2.obj is datagram
        assert parsed2 == parsed

    def test_header_does_not_alias_the_buffer(self) -> None:
        vector = next(v for v in VALID_V2 if v.name == 'tcp4-every-plain-tlv')
        datagram = bytearray(vector.wire + b'payload')
        parsed, view = parse_datagram(datagram)
        datagram[:len(vector.wire)] = bytes(len(vector.wire))
        assert parsed.result == vector.result
        assert parsed.result.tlv.entries == vector.entries
        assert view.tobytes() == b'payload'

    def test_empty_payload(self) -> None:
        parsed, view = parse_datagram(build_datagram(self.RESULT, b''))
        assert len(view) == 0
        assert parsed.result == self.RESULT

    def test_ipv6_and_tlvs(self) -> None:
        result = ProxyResultIPv6(
            (IPv6Address('2001:db8::1'), 1), (IPv6Address('2001:db8::2'), 2),
            protocol=SOCK_DGRAM, tlv=ProxyProtocolTLV(unique_id=b'u1'))
        parsed, view = parse_datagram(build_datagram(result, memoryview(b'p')))
        assert parsed.result == result
        assert bytes(view) == b'p'

    @pytest.mark.parametrize('vector', VALID_V2, ids=lambda v: v.name)
    def test_golden_datagrams(self, vector: Valid) -> None:
        datagram = vector.wire + b'payload'
        parsed, view = parse_datagram(datagram)
        assert parsed.result == vector.result
        assert bytes(view) == b'payload'

    @pytest.mark.parametrize('vector', VALID_V2, ids=lambda v: v.name)
    def test_truncated_header_is_an_error(self, vector: Valid) -> None:
        for end in range(len(vector.wire)):
            with pytest.raises(ProxyProtocolSyntaxError) as info:
                parse_datagram(vector.wire[:end])
            assert info.value.field in ('v2.length', 'v2.signature')

    @pytest.mark.parametrize('vector', INVALID_V2, ids=lambda v: v.name)
    def test_invalid(self, vector: Invalid) -> None:
        with pytest.raises(ProxyProtocolError) as info:
            parse_datagram(vector.wire + b'payload', max_length=16384)
        assert type(info.value) is vector.error
        assert info.value.field == vector.field

    def test_v1_is_not_for_datagrams(self) -> None:
        with pytest.raises(ProxyProtocolSyntaxError) as info:
            parse_datagram(b'PROXY UNKNOWN\r\npayload')
        assert info.value.field == 'v2.signature'

    def test_checksum(self) -> None:
        datagram = bytearray(build_datagram(self.RESULT, b'x', crc32c=True))
        datagram[16] ^= 1                       # corrupt the source address
        with pytest.raises(ProxyProtocolChecksumError):
            parse_datagram(datagram)
        # The payload is not covered by the checksum.
        datagram = bytearray(build_datagram(self.RESULT, b'x', crc32c=True))
        datagram[-1:] = b'y'
        parse_datagram(datagram)

    def test_length_cap(self) -> None:
        result: ProxyResult = ProxyResultLocal(tlv=ProxyProtocolTLV.from_entries(
            [(0x04, bytes(0xFFFF - 3))]))
        datagram = build_datagram(result, b'')
        parsed, view = parse_datagram(datagram)   # defaults to the maximum
        assert parsed.length == 16 + 0xFFFF
        with pytest.raises(ProxyProtocolTooLongError):
            parse_datagram(datagram, max_length=16384)
        with pytest.raises(ProxyProtocolTooLongError):
            parse_datagram(SIG + h('21 00 ffff'), max_length=100)
