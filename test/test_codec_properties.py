"""Properties of the codec over generated results and arbitrary bytes."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Callable, Optional, Union

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxyprotocol import (HeaderParser, NeedMore, ParsedHeader,
                           ProxyProtocolBuildError, ProxyProtocolError,
                           ProxyProtocolIncompleteError, build_datagram,
                           build_header, parse_datagram, parse_header)
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.result import (ProxyResult, ProxyResultIPv4,
                                  ProxyResultIPv6, ProxyResultLocal,
                                  ProxyResultUnix, ProxyResultUnknown)
from proxyprotocol.tlv import ProxyProtocolSSLTLV, ProxyProtocolTLV
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import MAX_V2_LENGTH, ProxyProtocolV2
from vectors.golden import SIG, VALID_V1, VALID_V2

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=150, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])

Outcome = Union[ParsedHeader, NeedMore, ProxyProtocolError]

# ------------------------------------------------------------- strategies

ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                max_size=40)
UTF8 = st.text(st.characters(codec='utf-8'), max_size=30)


def _tlv(tlv_type: int, value: bytes) -> bytes:
    return bytes([tlv_type]) + struct.pack('!H', len(value)) + value


@st.composite
def ssl_values(draw: st.DrawFn) -> bytes:
    """A valid PP2_TYPE_SSL value with arbitrary sub-TLVs."""
    value = bytes([draw(st.integers(0, 255))]) + \
        struct.pack('!L', draw(st.integers(0, 2 ** 32 - 1)))
    for _ in range(draw(st.integers(0, 4))):
        sub = draw(st.integers(0, 255))
        if sub in (0x21, 0x23, 0x24, 0x25, 0x26, 0x27):
            sub_value = draw(ASCII).encode()
        elif sub == 0x22:
            sub_value = draw(UTF8).encode()
        else:
            sub_value = draw(st.binary(max_size=20))
        value += _tlv(sub, sub_value)
    return value


@st.composite
def tlv_entries(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """Valid TLV entries of every type but CRC32C, duplicates allowed."""
    entries = []
    for _ in range(draw(st.integers(0, 6))):
        tlv_type = draw(st.one_of(
            st.sampled_from([0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xE0, 0xEA,
                             0xEE, 0xF0, 0xF8, 0xFF]),
            st.integers(0, 255).filter(lambda t: t != 0x03)))
        value: bytes
        if tlv_type == 0x02:
            value = draw(UTF8).encode()
        elif tlv_type == 0x05:
            value = draw(st.binary(max_size=128))
        elif tlv_type == 0x20:
            value = draw(ssl_values())
        elif tlv_type == 0x30:
            value = draw(ASCII).encode()
        else:
            value = draw(st.binary(max_size=40))
        entries.append((tlv_type, value))
    return entries


def tlvs() -> st.SearchStrategy[ProxyProtocolTLV]:
    return tlv_entries().map(ProxyProtocolTLV.from_entries)


PROTOCOLS = st.sampled_from([None, socket.SOCK_STREAM, socket.SOCK_DGRAM])
PORTS = st.integers(0, 65535)
PATH_TEXT = st.text(st.characters(codec='utf-8', exclude_characters='\x00'),
                    max_size=30)


@st.composite
def unix_paths(draw: st.DrawFn) -> str:
    path = draw(PATH_TEXT)
    if path and draw(st.booleans()):
        # Linux's abstract namespace; an empty abstract name would be sent
        # as 108 NULs, the same as no path.
        path = '\x00' + path
    return path


@st.composite
def results(draw: st.DrawFn) -> ProxyResult:
    """Any result a header can carry, with arbitrary TLVs."""
    kind = draw(st.sampled_from(['local', 'unknown', 'ipv4', 'ipv6',
                                 'unix']))
    tlv = draw(tlvs())
    if kind == 'local':
        return ProxyResultLocal(tlv=tlv)
    if kind == 'unknown':
        return ProxyResultUnknown(tlv=tlv)
    protocol = draw(PROTOCOLS)
    if kind == 'ipv4':
        return ProxyResultIPv4(
            (IPv4Address(draw(st.integers(0, 2 ** 32 - 1))), draw(PORTS)),
            (IPv4Address(draw(st.integers(0, 2 ** 32 - 1))), draw(PORTS)),
            protocol=protocol, tlv=tlv)
    if kind == 'ipv6':
        return ProxyResultIPv6(
            (IPv6Address(draw(st.integers(0, 2 ** 128 - 1))), draw(PORTS)),
            (IPv6Address(draw(st.integers(0, 2 ** 128 - 1))), draw(PORTS)),
            protocol=protocol, tlv=tlv)
    return ProxyResultUnix(draw(unix_paths()), draw(unix_paths()),
                           protocol=protocol, tlv=tlv)


@st.composite
def valid_headers(draw: st.DrawFn) -> bytes:
    """A valid v1 or v2 header."""
    if draw(st.booleans()):
        result = draw(results())
        return build_header(result, crc32c=draw(st.booleans()))
    if draw(st.booleans()):
        return draw(st.sampled_from([v.wire for v in VALID_V1 + VALID_V2]))
    result = draw(results().filter(lambda r: r.proxied))
    return build_header(result, version=1)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """Valid headers cut, extended, flipped, or bytes that look like one."""
    how = draw(st.integers(0, 5))
    if how == 0:
        return draw(st.binary(max_size=120))
    if how == 1:
        return SIG + draw(st.binary(max_size=120))
    if how == 2:
        return b'PROXY ' + draw(st.binary(
            max_size=110) | st.text('TCP46UNKOWN .:0123456789abcdefABCDEF\r\n',
                                    max_size=110).map(str.encode))
    data = bytearray(draw(valid_headers()))
    if how == 3:
        del data[draw(st.integers(0, len(data))):]
    elif how == 4:
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
    else:
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def outcome_of(call: Callable[[], Union[ParsedHeader, NeedMore]]) -> Outcome:
    try:
        return call()
    except ProxyProtocolError as exc:
        return exc


def same(a: Outcome, b: Outcome) -> bool:
    if isinstance(a, ProxyProtocolError) or isinstance(b, ProxyProtocolError):
        return (type(a) is type(b)
                and a.field == b.field)  # type: ignore[union-attr]
    return a == b


def parsed(data: bytes) -> ParsedHeader:
    outcome = parse_header(data, max_length=MAX_V2_LENGTH)
    assert isinstance(outcome, ParsedHeader), outcome
    return outcome


# ------------------------------------------------------------- round trips


@SETTINGS
@given(results(), st.booleans())
def test_v2_round_trip(result: ProxyResult, crc: bool) -> None:
    data = build_header(result, crc32c=crc)
    header = parsed(data)
    assert header.length == len(data)
    assert header.version == 2
    back = header.result
    entries = back.tlv.entries
    if crc:
        assert entries[-1][0] == 0x03
        entries = entries[:-1]
    assert entries == result.tlv.entries
    assert back.type is result.type
    assert back.proxied == result.proxied
    if result.proxied:
        assert back.source == result.source and back.dest == result.dest
        assert back.protocol == result.protocol
    if not crc:
        assert back == result
        assert build_header(back) == data


@SETTINGS
@given(results())
def test_v1_round_trip(result: ProxyResult) -> None:
    try:
        data = build_header(result, version=1)
    except ProxyProtocolBuildError:
        assert not result.proxied
        return
    header = parsed(data)
    assert header.length == len(data) <= 107
    assert header.version == 1
    back = header.result
    assert not back.tlv
    if isinstance(result, (ProxyResultIPv4, ProxyResultIPv6)):
        assert type(back) is type(result)
        assert back.source == result.source and back.dest == result.dest
        assert back.protocol == socket.SOCK_STREAM
        assert build_header(back, version=1) == data
    else:
        assert back == ProxyResultUnknown()


@SETTINGS
@given(results(), st.binary(max_size=64), st.booleans())
def test_datagram_round_trip(result: ProxyResult, payload: bytes,
                             crc: bool) -> None:
    datagram = build_datagram(result, payload, crc32c=crc)
    header, view = parse_datagram(datagram)
    assert view.obj is datagram
    assert view.tobytes() == payload
    assert header.length + len(payload) == len(datagram)
    assert header.result.tlv.entries[:len(result.tlv.entries)] == \
        result.tlv.entries


@SETTINGS
@given(tlv_entries())
def test_tlv_bytes_round_trip(entries: list[tuple[int, bytes]]) -> None:
    tlv = ProxyProtocolTLV.from_entries(entries)
    again = ProxyProtocolTLV(bytes(tlv))
    assert again.entries == tlv.entries
    for tlv_type, _ in entries:
        assert tlv.get_all(tlv_type) == \
            [v for t, v in entries if t == tlv_type]
        assert tlv[tlv_type] == tlv.get_all(tlv_type)[-1]


@SETTINGS
@given(ssl_values())
def test_ssl_value_round_trip(value: bytes) -> None:
    ssl = ProxyProtocolSSLTLV(value)
    assert bytes(ProxyProtocolSSLTLV(bytes(ssl))) == bytes(ssl)
    assert ssl.client == value[0]
    assert ssl.verified == (value[1:5] == bytes(4))
    for accessor in ('version', 'cn', 'cipher', 'sig_alg', 'key_alg',
                     'group', 'sig_scheme'):
        text: Optional[str] = getattr(ssl, accessor)
        assert text is None or isinstance(text, str)


# ------------------------------------------------------------- any bytes


@SETTINGS
@given(mangled())
def test_any_bytes_give_an_answer_or_our_error(data: bytes) -> None:
    for buffer in (data, bytearray(data), memoryview(data)):
        outcome = outcome_of(lambda: parse_header(buffer))
        assert isinstance(outcome, (ParsedHeader, NeedMore,
                                    ProxyProtocolError))
        if isinstance(outcome, ProxyProtocolError):
            assert isinstance(outcome, ValueError)
            assert outcome.field is not None
        elif isinstance(outcome, ParsedHeader):
            assert 0 < outcome.length <= len(data)
        else:
            assert (outcome.want_bytes or 0) > 0 or outcome.want_line


@SETTINGS
@given(mangled())
def test_any_datagram_gives_a_header_or_our_error(data: bytes) -> None:
    try:
        header, view = parse_datagram(data)
    except ProxyProtocolError:
        return
    assert view.obj is data
    assert header.length + len(view) == len(data)


@SETTINGS
@given(mangled())
def test_legacy_unpack_gives_a_result_or_our_errors(data: bytes) -> None:
    for pp in (ProxyProtocolV1(), ProxyProtocolV2(), ProxyProtocolDetect()):
        try:
            result = pp.unpack(data)
        except ProxyProtocolIncompleteError as exc:
            want = exc.want_read
            assert (want.want_bytes or 0) > 0 or want.want_line
        except ProxyProtocolError:
            pass
        else:
            assert isinstance(result, ProxyResult)


@SETTINGS
@given(mangled())
def test_one_byte_at_a_time_equals_one_call(data: bytes) -> None:
    parser = HeaderParser()
    step = outcome_of(lambda: parser.feed(b''))
    for end in range(1, len(data) + 1):
        step = outcome_of(lambda: parser.feed(data[end - 1:end]))
        assert same(step, outcome_of(lambda: parse_header(data[:end])))
        if not isinstance(step, NeedMore):
            break
    if isinstance(step, ParsedHeader):
        assert step.length == end
        assert parser.trailing_data == b''
        assert parser.feed(data[end:]) is step
        assert parser.trailing_data == data[end:]


@FEW
@given(mangled(), st.lists(st.integers(1, 40), max_size=8))
def test_any_chunking_gives_the_same_header(data: bytes,
                                            sizes: list[int]) -> None:
    whole = outcome_of(lambda: parse_header(data))
    parser = HeaderParser()
    pos = 0
    last: Outcome = outcome_of(lambda: parser.feed(b''))
    for size in sizes + [len(data)]:
        chunk = data[pos:pos + size]
        pos += size
        last = outcome_of(lambda: parser.feed(chunk))
        if not isinstance(last, NeedMore):
            break
    if isinstance(whole, ParsedHeader):
        assert last == whole
        assert parser.feed(data[pos:]) is last
        assert parser.trailing_data == data[whole.length:]
    elif isinstance(whole, NeedMore):
        assert last == whole
    else:
        assert isinstance(last, ProxyProtocolError)


@SETTINGS
@given(valid_headers(), st.binary(max_size=200))
def test_length_is_exact_whatever_follows(header: bytes,
                                          trailing: bytes) -> None:
    alone = parsed(header)
    followed = parsed(header + trailing)
    assert followed.length == alone.length == len(header)
    assert followed.result == alone.result


@SETTINGS
@given(valid_headers())
def test_every_prefix_needs_more(header: bytes) -> None:
    for end in range(len(header)):
        assert isinstance(parse_header(header[:end],
                                       max_length=MAX_V2_LENGTH), NeedMore)


@FEW
@given(results(), st.data())
def test_checksum_catches_a_flipped_bit(result: ProxyResult,
                                        data: st.DataObject) -> None:
    header = bytearray(build_header(result, crc32c=True))
    # Any bit of the fixed part's family byte onwards, up to the CRC value,
    # except the type and length bytes of the TLVs themselves.
    structure = {12, 14, 15}
    pos = 16 + {0x10: 12, 0x20: 36, 0x30: 216}.get(header[13] & 0xF0, 0)
    if header[12] == 0x20:
        pos = 16
    while pos < len(header):
        structure.update({pos, pos + 1, pos + 2})
        pos += 3 + int.from_bytes(header[pos + 1:pos + 3], 'big')
    choices = [i for i in range(13, len(header)) if i not in structure]
    at = data.draw(st.sampled_from(choices))
    header[at] ^= 1 << data.draw(st.integers(0, 7))
    outcome = outcome_of(lambda: parse_header(bytes(header)))
    assert isinstance(outcome, ProxyProtocolError)
