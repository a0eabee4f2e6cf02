"""The v2 (binary) reader: spec section 2.2, strictly, and incrementally."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from socket import SOCK_STREAM
from typing import Any, Callable, Union

import pytest

from proxyprotocol import (DEFAULT_MAX_LENGTH, NeedMore, ParsedHeader,
                           ProxyProtocolChecksumError, ProxyProtocolError,
                           ProxyProtocolSyntaxError, ProxyProtocolTooLongError,
                           parse_header)
from proxyprotocol.result import (ProxyResultIPv4, ProxyResultIPv6,
                                  ProxyResultLocal, ProxyResultUnix,
                                  ProxyResultUnknown)
from proxyprotocol.tlv import ProxyProtocolTLV
from proxyprotocol.v2 import (MAX_V2_LENGTH, V2_SIGNATURE, ProxyProtocolV2,
                              unpack_v2)
from vectors.golden import (INVALID_V2, PACKED_0_11, SIG, VALID_V2, Invalid,
                            Valid, crc32c_reference, h)

Buffer = Union[bytes, bytearray, memoryview]
BUFFERS: list[Callable[[bytes], Buffer]] = [bytes, bytearray, memoryview]

BLOCK4 = h('c0000201 c6336402 d431 01bb')
BLOCK6 = bytes(range(32)) + h('0001 0002')
TCP4_RESULT = ProxyResultIPv4((IPv4Address('192.0.2.1'), 54321),
                              (IPv4Address('198.51.100.2'), 443),
                              protocol=SOCK_STREAM)


def header(ver_cmd: int, fam: int, body: bytes,
           length: int | None = None) -> bytes:
    """A v2 header with ``body`` after the fixed 16 bytes."""
    if length is None:
        length = len(body)
    return SIG + bytes([ver_cmd, fam]) + struct.pack('!H', length) + body


def tlv(tlv_type: int, value: bytes) -> bytes:
    return bytes([tlv_type]) + struct.pack('!H', len(value)) + value


def with_crc(data: bytes) -> bytes:
    """``data`` (a header with one zeroed CRC32C TLV) with its CRC filled."""
    at = data.index(h('03 0004 00000000'), 16) + 3
    crc = crc32c_reference(data).to_bytes(4, 'big')
    return data[:at] + crc + data[at + 4:]


def _parsed(data: Buffer, **kwargs: int) -> ParsedHeader:
    parsed = parse_header(data, **kwargs)  # type: ignore[arg-type]
    assert isinstance(parsed, ParsedHeader), parsed
    return parsed


@pytest.mark.parametrize('vector', VALID_V2 + PACKED_0_11,
                         ids=lambda v: v.name)
@pytest.mark.parametrize('buffer', BUFFERS)
def test_golden_valid(vector: Valid, buffer: Callable[[bytes], Buffer]
                      ) -> None:
    parsed = _parsed(buffer(vector.wire))
    assert parsed.version == 2
    assert parsed.length == len(vector.wire)
    assert parsed.result == vector.result
    assert parsed.result.tlv.entries == vector.result.tlv.entries
    if vector.entries:
        assert parsed.result.tlv.entries == vector.entries
    # The TLV block is kept byte for byte.
    tlv_bytes = bytes(parsed.result.tlv)
    assert vector.wire.endswith(tlv_bytes)


@pytest.mark.parametrize('vector', VALID_V2, ids=lambda v: v.name)
@pytest.mark.parametrize('trailing', [b'\x00', SIG + b'\x21\x11',
                                      b'PROXY TCP4 ', bytes(70000)])
def test_length_is_exact_with_trailing_bytes(vector: Valid,
                                             trailing: bytes) -> None:
    data = bytearray(vector.wire + trailing)
    before = bytes(data)
    parsed = _parsed(memoryview(data))
    assert parsed.length == len(vector.wire)
    assert parsed.result == vector.result
    assert bytes(data) == before


@pytest.mark.parametrize('vector', VALID_V2, ids=lambda v: v.name)
def test_every_prefix_asks_for_exactly_what_is_missing(vector: Valid) -> None:
    wire = vector.wire
    total = len(wire)
    for end in range(total):
        outcome = parse_header(wire[:end])
        if end < 8:
            assert outcome == NeedMore(8 - end)  # detection's 8 bytes
        elif end < 16:
            assert outcome == NeedMore(16 - end)
        else:
            assert outcome == NeedMore(total - end)
        assert isinstance(outcome, NeedMore) and not outcome.want_line
        # The v2 reader alone asks for the fixed 16 bytes first.
        alone = unpack_v2(wire[:end])
        assert alone == NeedMore((16 if end < 16 else total) - end)


@pytest.mark.parametrize('vector', INVALID_V2, ids=lambda v: v.name)
@pytest.mark.parametrize('buffer', BUFFERS)
def test_golden_invalid(vector: Invalid, buffer: Callable[[bytes], Buffer]
                        ) -> None:
    with pytest.raises(vector.error) as info:
        parse_header(buffer(vector.wire))
    exc = info.value
    assert isinstance(exc, ProxyProtocolError)
    assert isinstance(exc, ValueError)
    assert exc.field == vector.field
    assert isinstance(exc.offset, int) and 0 <= exc.offset < len(vector.wire)


@pytest.mark.parametrize('ver_cmd', range(256))
def test_version_and_command_byte(ver_cmd: int) -> None:
    data = header(ver_cmd, 0x11, BLOCK4)
    if ver_cmd in (0x20, 0x21):
        result = _parsed(data).result
        assert result.proxied == (ver_cmd == 0x21)
        return
    # Rejected as soon as the 13th byte arrives.
    assert parse_header(data[:12]) == NeedMore(4)
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(data[:13])
    assert info.value.field == ('v2.version' if ver_cmd >> 4 != 2
                                else 'v2.command')
    assert info.value.offset == 12
    with pytest.raises(ProxyProtocolSyntaxError):
        parse_header(data)


@pytest.mark.parametrize('fam', range(256))
def test_family_and_protocol_byte(fam: int) -> None:
    family, protocol = fam >> 4, fam & 0xF
    body = bytes((0, 12, 36, 216)[family] if family < 4 else 12)
    data = header(0x21, fam, body)
    if family <= 3 and protocol <= 2:
        result = _parsed(data).result
        assert result.type.value[0] == (2, 3, 4, 5)[family]
        if family:
            assert result.protocol == (None, SOCK_STREAM, 2)[protocol]
        return
    assert parse_header(data[:13]) == NeedMore(3)
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(data[:14])
    assert info.value.field == ('v2.family' if family > 3 else 'v2.protocol')
    assert info.value.offset == 13


@pytest.mark.parametrize('position', range(12))
def test_signature_rejected_at_the_first_wrong_byte(position: int) -> None:
    data = bytearray(header(0x21, 0x11, BLOCK4))
    data[position] ^= 0x01
    if position:
        assert isinstance(parse_header(bytes(data[:position])), NeedMore)
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(bytes(data[:position + 1]))
    assert info.value.field in ('signature', 'v2.signature')
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(bytes(data))
    assert info.value.field in ('signature', 'v2.signature')


def test_version_3_rejected_after_13_bytes() -> None:
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(SIG + b'\x31')
    assert info.value.field == 'v2.version'


class TestLocal:
    """LOCAL: addresses ignored, TLVs still read (spec 2.2)."""

    def test_no_address(self) -> None:
        result = _parsed(header(0x20, 0x00, b'')).result
        assert result == ProxyResultLocal()
        assert not result.proxied
        assert result.source is None and result.dest is None

    @pytest.mark.parametrize('fam, block', [(0x11, BLOCK4), (0x21, BLOCK6),
                                            (0x31, bytes(216)),
                                            (0x12, BLOCK4)])
    def test_address_block_skipped_then_tlvs(self, fam: int,
                                             block: bytes) -> None:
        data = header(0x20, fam, block + tlv(0x05, b'id') + tlv(0x01, b'h2'))
        parsed = _parsed(data)
        assert parsed.length == len(data)
        assert isinstance(parsed.result, ProxyResultLocal)
        assert parsed.result.tlv.entries == ((0x05, b'id'), (0x01, b'h2'))
        assert parsed.result.tlv.unique_id == b'id'

    @pytest.mark.parametrize('fam', [0x11, 0x21, 0x31])
    def test_family_without_block(self, fam: int) -> None:
        # "it should not present any address so it sets this field to zero"
        assert _parsed(header(0x20, fam, b'')).result == ProxyResultLocal()

    def test_address_block_only(self) -> None:
        result = _parsed(header(0x20, 0x11, BLOCK4)).result
        assert result == ProxyResultLocal()
        assert not result.tlv

    def test_crc_checked(self) -> None:
        data = with_crc(header(0x20, 0x11, BLOCK4 + h('03 0004 00000000')))
        assert _parsed(data).result.tlv.crc32c is not None
        bad = data[:17] + bytes([data[17] ^ 0xFF]) + data[18:]
        with pytest.raises(ProxyProtocolChecksumError) as info:
            parse_header(bad)
        assert isinstance(info.value.result, ProxyResultLocal)


class TestUnspec:
    """PROXY with the UNSPEC family: no addresses, TLVs kept and checked."""

    def test_tlvs_kept(self) -> None:
        data = header(0x21, 0x00, tlv(0x02, b'example.com'))
        result = _parsed(data).result
        assert isinstance(result, ProxyResultUnknown)
        assert result.proxied
        assert result.tlv.authority == 'example.com'
        assert result.exception is None

    def test_crc_checked(self) -> None:
        data = with_crc(header(0x21, 0x00, tlv(0x05, b'x')
                               + h('03 0004 00000000')))
        assert isinstance(_parsed(data).result, ProxyResultUnknown)
        with pytest.raises(ProxyProtocolChecksumError) as info:
            parse_header(data[:-1] + bytes([data[-1] ^ 1]))
        assert isinstance(info.value.result, ProxyResultUnknown)
        assert info.value.result.tlv.unique_id == b'x'

    def test_tlvs_validated(self) -> None:
        with pytest.raises(ProxyProtocolSyntaxError) as info:
            parse_header(header(0x21, 0x00, tlv(0x05, bytes(129))))
        assert info.value.field == 'v2.tlv.unique_id'


class TestChecksum:
    """CRC32C over the bytes as received (spec 2.2.3)."""

    def test_mismatch_carries_the_result(self) -> None:
        data = with_crc(header(0x21, 0x11, BLOCK4 + tlv(0x05, b'abc')
                               + h('03 0004 00000000')))
        bad = data[:-4] + bytes(4)
        with pytest.raises(ProxyProtocolChecksumError) as info:
            parse_header(bad)
        exc = info.value
        assert isinstance(exc, ProxyProtocolError)
        assert isinstance(exc, ValueError)
        assert exc.field == 'v2.tlv.crc32c'
        assert exc.offset == len(bad) - 7
        assert isinstance(exc.result, ProxyResultIPv4)
        assert exc.result.source == TCP4_RESULT.source
        assert exc.result.tlv.unique_id == b'abc'
        assert exc.result.tlv.crc32c == 0

    @pytest.mark.parametrize('position', list(range(16, 28)) + [31, 32, 33])
    def test_any_flipped_bit_in_addresses_or_values(self,
                                                    position: int) -> None:
        data = with_crc(header(0x21, 0x11, BLOCK4 + tlv(0x05, b'abc')
                               + h('03 0004 00000000')))
        assert _parsed(data).result.tlv.crc32c is not None
        for bit in range(8):
            bad = bytearray(data)
            bad[position] ^= 1 << bit
            with pytest.raises(ProxyProtocolChecksumError):
                parse_header(bytes(bad))

    @pytest.mark.parametrize('vector', [
        v for v in VALID_V2 + PACKED_0_11 if 0x03 in v.result.tlv],
        ids=lambda v: v.name)
    def test_golden_crcs_match_the_reference(self, vector: Valid) -> None:
        crc_value = vector.result.tlv[0x03]
        at = vector.wire.rindex(h('03 0004') + crc_value) + 3
        zeroed = vector.wire[:at] + bytes(4) + vector.wire[at + 4:]
        assert crc32c_reference(zeroed) == int.from_bytes(crc_value, 'big')

    def test_crc_in_a_long_unsorted_header(self) -> None:
        body = BLOCK6 + tlv(0xF1, bytes(1000)) + h('03 0004 00000000') \
            + tlv(0x01, b'a') + tlv(0x01, b'b') + tlv(0x02, b'c')
        data = with_crc(header(0x21, 0x21, body))
        result = _parsed(data).result
        assert [t for t, _ in result.tlv.entries] == [0xF1, 0x03, 1, 1, 2]


class TestLengthCap:
    """``max_length`` bounds the whole header, before its body arrives."""

    def noop_header(self, total: int) -> bytes:
        return header(0x21, 0x00, tlv(0x04, bytes(total - 16 - 3)))

    def test_default(self) -> None:
        assert DEFAULT_MAX_LENGTH == 16384
        data = self.noop_header(DEFAULT_MAX_LENGTH)
        assert _parsed(data).length == DEFAULT_MAX_LENGTH
        too_long = self.noop_header(DEFAULT_MAX_LENGTH + 1)
        with pytest.raises(ProxyProtocolTooLongError) as info:
            parse_header(too_long[:16])  # refused on the length field alone
        assert info.value.field == 'v2.length'
        assert info.value.offset == 14
        assert isinstance(info.value, ProxyProtocolSyntaxError)

    def test_largest_possible(self) -> None:
        data = self.noop_header(MAX_V2_LENGTH)
        assert MAX_V2_LENGTH == 16 + 0xFFFF
        assert _parsed(data, max_length=MAX_V2_LENGTH).length == MAX_V2_LENGTH
        with pytest.raises(ProxyProtocolTooLongError):
            parse_header(data)

    @pytest.mark.parametrize('cap', [16, 27, 28, 40])
    def test_custom(self, cap: int) -> None:
        data = header(0x21, 0x11, BLOCK4)
        if cap >= len(data):
            assert _parsed(data, max_length=cap).length == len(data)
        else:
            with pytest.raises(ProxyProtocolTooLongError):
                parse_header(data, max_length=cap)

    def test_cap_does_not_apply_to_v1(self) -> None:
        assert _parsed(b'PROXY UNKNOWN\r\n', max_length=16).length == 15


class TestAddresses:
    def test_unix_paths(self) -> None:
        src = b'/tmp/a\x00junk'.ljust(108, b'\x00')
        dst = b'/tmp/\xff'.ljust(108, b'\x00')
        result = _parsed(header(0x21, 0x31, src + dst)).result
        assert isinstance(result, ProxyResultUnix)
        assert result.source == '/tmp/a'           # ends at the first NUL
        assert result.dest == '/tmp/\udcff'        # undecodable bytes kept
        assert result.peername == '/tmp/a'
        assert result.sockname == '/tmp/\udcff'

    def test_unix_abstract_and_empty(self) -> None:
        src = b'\x00name\x00'.ljust(108, b'\x00')
        result = _parsed(header(0x21, 0x32, src + bytes(108))).result
        assert result.source == '\x00name'
        assert result.dest == ''

    def test_unix_full_length_path(self) -> None:
        path = b'p' * 108
        result = _parsed(header(0x21, 0x31, path + path)).result
        assert result.source == 'p' * 108

    def test_ipv6(self) -> None:
        result = _parsed(header(0x21, 0x21, BLOCK6)).result
        assert isinstance(result, ProxyResultIPv6)
        assert result == ProxyResultIPv6(
            (IPv6Address(bytes(range(16))), 1),
            (IPv6Address(bytes(range(16, 32))), 2), protocol=SOCK_STREAM)
        assert str(result.source_ip) == '1:203:405:607:809:a0b:c0d:e0f'
        assert result.source_port == 1
        assert result.dest_port == 2
        assert result.peername == ('1:203:405:607:809:a0b:c0d:e0f', 1, 0, 0)

    def test_block_longer_than_needed_is_tlvs(self) -> None:
        data = header(0x21, 0x11, BLOCK4 + tlv(0xE1, b'x'))
        result = _parsed(data).result
        assert result == ProxyResultIPv4(
            TCP4_RESULT.source, TCP4_RESULT.dest, protocol=SOCK_STREAM,
            tlv=ProxyProtocolTLV.from_entries([(0xE1, b'x')]))


def test_signature_constant() -> None:
    assert V2_SIGNATURE == b'\r\n\r\n\x00\r\nQUIT\n'
    assert SIG == V2_SIGNATURE


def test_only_v1_allowed_rejects_v2() -> None:
    with pytest.raises(ProxyProtocolSyntaxError) as info:
        parse_header(header(0x21, 0x11, BLOCK4), versions=(1,))
    assert info.value.field == 'signature'


def test_legacy_pack_takes_any_mapping_of_tlvs() -> None:
    # 0.11 typed result.tlv as ProxyProtocolTLV, but a plain mapping worked:
    # one entry per type, ascending, with the CRC32C in its place.
    class Plain(ProxyResultUnknown):
        @property
        def tlv(self) -> Any:
            return {0x05: b'id', 0x01: b'h2', 0x100: b'dropped'}

    data = ProxyProtocolV2().pack(Plain())
    result = ProxyProtocolV2().unpack(data)
    assert [t for t, _ in result.tlv.entries] == [0x01, 0x03, 0x05]
    assert result.tlv.alpn == b'h2' and result.tlv.unique_id == b'id'
