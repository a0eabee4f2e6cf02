"""Writing headers: build_header, build_datagram, result_from_sockaddrs."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC, SOCK_DGRAM, SOCK_STREAM
from typing import Any, Optional

import pytest

from proxyprotocol import (ParsedHeader, ProxyProtocolBuildError,
                           build_datagram, build_header, parse_header,
                           result_from_sockaddrs)
from proxyprotocol.result import (ProxyResult, ProxyResultIPv4,
                                  ProxyResultIPv6, ProxyResultLocal,
                                  ProxyResultUnix, ProxyResultUnknown)
from proxyprotocol.tlv import ProxyProtocolTLV
from proxyprotocol.v2 import pack_v2
from vectors.golden import (SIG, VALID_V1, VALID_V2, Valid, crc32c_reference,
                            h)

V4 = ProxyResultIPv4((IPv4Address('192.0.2.1'), 54321),
                     (IPv4Address('198.51.100.2'), 443), protocol=SOCK_STREAM)
V6 = ProxyResultIPv6((IPv6Address('2001:db8::1'), 8080),
                     (IPv6Address('2001:db8::2'), 80), protocol=SOCK_STREAM)
TLVS = ProxyProtocolTLV.from_entries([(0x05, b'id'), (0x01, b'h2'),
                                      (0x01, b'h3')])


def parse(data: bytes) -> ParsedHeader:
    parsed = parse_header(data)
    assert isinstance(parsed, ParsedHeader), parsed
    assert parsed.length == len(data)
    return parsed


# Golden vectors whose wire form is the one way to write their result.
CANONICAL_V2 = [v for v in VALID_V2 if v.name not in (
    'local-inet-block-then-tlv',    # a LOCAL header is written without block
    'proxy-unspec-stream',          # UNSPEC family is written as 0x00
)]


@pytest.mark.parametrize('vector', CANONICAL_V2, ids=lambda v: v.name)
def test_v2_golden_written_byte_for_byte(vector: Valid) -> None:
    assert build_header(vector.result) == vector.wire
    assert build_header(vector.result, version=2) == vector.wire


@pytest.mark.parametrize('vector', CANONICAL_V2, ids=lambda v: v.name)
def test_v2_parsed_results_written_back_identically(vector: Valid) -> None:
    # Straight from the wire, before anything decoded the addresses.
    assert build_header(parse(vector.wire).result) == vector.wire


@pytest.mark.parametrize('vector', VALID_V1, ids=lambda v: v.name)
def test_v1_parsed_results_written_back_identically(vector: Valid) -> None:
    result = parse(vector.wire).result
    line = build_header(result, version=1)
    if isinstance(result, ProxyResultUnknown):
        assert line == b'PROXY UNKNOWN\r\n'
    else:
        # Addresses in the canonical text (RFC 5952 for IPv6).
        assert line == vector.wire.replace(b'DB8', b'db8')
    assert parse(line).result == vector.result


@pytest.mark.parametrize('line, result', [
    (b'PROXY TCP4 192.0.2.1 198.51.100.2 54321 443\r\n', V4),
    (b'PROXY TCP6 2001:db8::1 2001:db8::2 8080 80\r\n', V6),
    (b'PROXY TCP6 ::ffff:192.0.2.1 :: 0 65535\r\n', ProxyResultIPv6(
        (IPv6Address('::ffff:192.0.2.1'), 0), (IPv6Address('::'), 65535))),
    (b'PROXY UNKNOWN\r\n', ProxyResultUnknown()),
    (b'PROXY UNKNOWN\r\n', ProxyResultUnix('/a', '/b')),
])
def test_v1_lines(line: bytes, result: ProxyResult) -> None:
    assert build_header(result, version=1) == line


def test_v1_from_a_v2_result() -> None:
    parsed = parse(VALID_V2[3].wire)            # tcp6
    assert build_header(parsed.result, version=1) == \
        b'PROXY TCP6 2001:db8::1 2001:db8::2 8080 80\r\n'
    parsed = parse(VALID_V2[0].wire)            # tcp4
    assert build_header(parsed.result, version=1) == \
        b'PROXY TCP4 192.0.2.1 198.51.100.2 54321 443\r\n'


def test_v2_from_a_v1_result() -> None:
    for line in (b'PROXY TCP4 192.0.2.1 198.51.100.2 54321 443\r\n',
                 b'PROXY TCP6 2001:db8::1 2001:db8::2 8080 80\r\n'):
        result = parse(line).result          # addresses not looked at yet
        data = build_header(result)
        assert parse(data).result == result
        assert data == build_header(V4 if b'TCP4' in line else V6)


def test_v1_drops_tlvs_and_zone_ids() -> None:
    result = ProxyResultIPv6((IPv6Address('fe80::1%eth0'), 1),
                             (IPv6Address('::1'), 2), tlv=TLVS)
    line = build_header(result, version=1)
    assert line == b'PROXY TCP6 fe80::1 ::1 1 2\r\n'
    assert parse(line).result.source == (IPv6Address('fe80::1'), 1)


def test_v1_cannot_send_local() -> None:
    with pytest.raises(ProxyProtocolBuildError) as info:
        build_header(ProxyResultLocal(), version=1)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize('version', [0, 3, '2'])
def test_unknown_version(version: Any) -> None:
    with pytest.raises(ProxyProtocolBuildError):
        build_header(V4, version=version)


@pytest.mark.parametrize('protocol, nibble', [(None, 0), (SOCK_STREAM, 1),
                                              (SOCK_DGRAM, 2)])
@pytest.mark.parametrize('result, family, size', [
    (V4, 0x10, 12), (V6, 0x20, 36),
    (ProxyResultUnix('/tmp/a', '\x00abstract'), 0x30, 216)])
def test_v2_every_family_and_protocol(result: ProxyResult, family: int,
                                      size: int,
                                      protocol: Optional[socket.SocketKind],
                                      nibble: int) -> None:
    if isinstance(result, ProxyResultUnix):
        result = ProxyResultUnix(result.source, result.dest,
                                 protocol=protocol, tlv=TLVS)
    else:
        result = type(result)(result.source, result.dest,  # type: ignore
                              protocol=protocol, tlv=TLVS)
    data = build_header(result)
    assert data[:12] == SIG
    assert data[12] == 0x21
    assert data[13] == family | nibble
    assert int.from_bytes(data[14:16], 'big') == size + len(bytes(TLVS))
    back = parse(data).result
    assert back == result
    assert back.protocol == protocol
    assert back.tlv.entries == TLVS.entries


def test_v2_unknown_and_local() -> None:
    assert build_header(ProxyResultUnknown()) == SIG + h('21 00 0000')
    assert build_header(ProxyResultLocal()) == SIG + h('20 00 0000')
    data = build_header(ProxyResultUnknown(RuntimeError('x'), tlv=TLVS))
    assert data == SIG + h('21 00') + len(bytes(TLVS)).to_bytes(2, 'big') \
        + bytes(TLVS)
    data = build_header(ProxyResultLocal(tlv=TLVS))
    assert parse(data).result == ProxyResultLocal(tlv=TLVS)


def test_v2_unsupported_protocol_is_sent_as_unspec() -> None:
    result = ProxyResultIPv4(V4.source, V4.dest, protocol=socket.SOCK_RAW)
    assert build_header(result)[13] == 0x10


class TestChecksum:
    @pytest.mark.parametrize('result', [
        V4, V6, ProxyResultUnix('/a', '/b'), ProxyResultUnknown(),
        ProxyResultLocal(),
        ProxyResultIPv4(V4.source, V4.dest, tlv=ProxyProtocolTLV.from_entries(
            [(0x03, h('deadbeef')), (0x01, b'a'), (0x03, bytes(4))]))])
    def test_added_last_and_verified(self, result: ProxyResult) -> None:
        data = build_header(result, crc32c=True)
        assert data[-7:-4] == h('03 0004')
        zeroed = data[:-4] + bytes(4)
        assert int.from_bytes(data[-4:], 'big') == crc32c_reference(zeroed)
        back = parse(data).result
        assert back.tlv.get_all(0x03) == [data[-4:]]   # any old CRC replaced
        assert [t for t, _ in back.tlv.entries][:-1] == \
            [t for t, _ in result.tlv.entries if t != 0x03]

    def test_not_added_unless_asked(self) -> None:
        assert 0x03 not in parse(build_header(V4)).result.tlv
        assert build_header(V4, crc32c=False) == build_header(V4)

    def test_pack_v2_with_other_tlvs(self) -> None:
        data = pack_v2(V4, tlv=TLVS, crc32c=True)
        back = parse(data).result
        assert back.tlv.entries[:-1] == TLVS.entries
        assert pack_v2(V4, tlv=TLVS) == build_header(
            ProxyResultIPv4(V4.source, V4.dest, protocol=SOCK_STREAM,
                            tlv=TLVS))


class TestBuildErrors:
    def test_unix_path_too_long(self) -> None:
        assert parse(build_header(ProxyResultUnix('x' * 108, ''))).result \
            .source == 'x' * 108
        with pytest.raises(ProxyProtocolBuildError):
            build_header(ProxyResultUnix('x' * 109, ''))
        with pytest.raises(ProxyProtocolBuildError):
            build_header(ProxyResultUnix('', '\u00e9' * 55))

    def test_unix_paths_of_other_types(self) -> None:
        # Paths given as bytes are sent as they are; a missing one as empty.
        result = ProxyResultUnix(b'/raw\xff', None)  # type: ignore[arg-type]
        back = parse(build_header(result)).result
        assert back == ProxyResultUnix('/raw\udcff', '')

    def test_header_too_long(self) -> None:
        big = ProxyProtocolTLV.from_entries([(0x04, bytes(0xFFFF - 12 - 3))])
        data = build_header(ProxyResultIPv4(V4.source, V4.dest, tlv=big))
        assert len(data) == 16 + 0xFFFF
        with pytest.raises(ProxyProtocolBuildError):
            build_header(ProxyResultIPv4(V4.source, V4.dest, tlv=big),
                         crc32c=True)
        with pytest.raises(ProxyProtocolBuildError):
            build_header(ProxyResultIPv6(V6.source, V6.dest, tlv=big))

    @pytest.mark.parametrize('port', [-1, 65536, 10 ** 6])
    @pytest.mark.parametrize('version', [1, 2])
    def test_port_out_of_range(self, port: int, version: int) -> None:
        result = ProxyResultIPv4((IPv4Address('192.0.2.1'), port),
                                 (IPv4Address('192.0.2.2'), 1))
        with pytest.raises(ProxyProtocolBuildError):
            build_header(result, version=version)
        result6 = ProxyResultIPv6((IPv6Address('::1'), 1),
                                  (IPv6Address('::2'), port))
        with pytest.raises(ProxyProtocolBuildError):
            build_header(result6, version=version)


def test_build_datagram() -> None:
    for result in (V4, V6, ProxyResultUnknown(), ProxyResultLocal()):
        assert build_datagram(result, b'payload') == \
            build_header(result) + b'payload'
        assert build_datagram(result, bytearray(b'p'), crc32c=True) == \
            build_header(result, crc32c=True) + b'p'


class TestResultFromSockaddrs:
    """Socket-style addresses to results, as a proxy describes its client."""

    def test_ipv4(self) -> None:
        result = result_from_sockaddrs(('192.0.2.1', 1), ('192.0.2.2', 2),
                                       protocol=SOCK_STREAM)
        assert result == ProxyResultIPv4((IPv4Address('192.0.2.1'), 1),
                                         (IPv4Address('192.0.2.2'), 2),
                                         protocol=SOCK_STREAM)
        assert result_from_sockaddrs(('192.0.2.1', 1), ('192.0.2.2', 2),
                                     family=AF_INET) == \
            ProxyResultIPv4((IPv4Address('192.0.2.1'), 1),
                            (IPv4Address('192.0.2.2'), 2))

    def test_ipv6_with_flow_and_scope(self) -> None:
        result = result_from_sockaddrs(('fe80::1%eth0', 1, 0, 2),
                                       ('2001:db8::2', 2, 0, 0))
        assert result == ProxyResultIPv6((IPv6Address('fe80::1'), 1),
                                         (IPv6Address('2001:db8::2'), 2))

    @pytest.mark.parametrize('source, dest', [
        (('192.0.2.1', 1), ('2001:db8::2', 2, 0, 0)),
        (('2001:db8::1', 1, 0, 0), ('192.0.2.2', 2)),
    ])
    def test_mixed_promoted_to_ipv6(self, source: Any, dest: Any) -> None:
        result = result_from_sockaddrs(source, dest, protocol=SOCK_STREAM)
        assert isinstance(result, ProxyResultIPv6)
        for ip in (result.source_ip, result.dest_ip):
            assert ip.version == 6
        mapped = result.source_ip if source[0] == '192.0.2.1' \
            else result.dest_ip
        assert mapped == IPv6Address('::ffff:192.0.2.1') \
            or mapped == IPv6Address('::ffff:192.0.2.2')
        assert mapped.ipv4_mapped in (IPv4Address('192.0.2.1'),
                                      IPv4Address('192.0.2.2'))
        back = parse(build_header(result)).result
        assert back == result
        assert parse(build_header(result, version=1)).result == result

    def test_ip_objects_accepted(self) -> None:
        result = result_from_sockaddrs((IPv4Address('192.0.2.1'), 1),
                                       (IPv6Address('::1'), 2))
        assert result.source == (IPv6Address('::ffff:192.0.2.1'), 1)

    def test_unix(self) -> None:
        result = result_from_sockaddrs('/run/a.sock', '/run/b.sock',
                                       protocol=SOCK_STREAM)
        assert result == ProxyResultUnix('/run/a.sock', '/run/b.sock',
                                         protocol=SOCK_STREAM)
        # Linux gives unnamed sockets as '' and abstract ones as bytes.
        result = result_from_sockaddrs('', b'\x00abstract')
        assert result == ProxyResultUnix('', '\x00abstract')
        back = parse(build_header(result)).result
        assert back == result
        assert result_from_sockaddrs(None, '/b', family=AF_UNIX) == \
            ProxyResultUnix('', '/b')

    @pytest.mark.parametrize('source, dest', [
        (None, None), (None, ('192.0.2.1', 1)), (('192.0.2.1', 1), '/path'),
        ((), ()), (('x',), ('y',)), (12, 34)])
    def test_unknown(self, source: Any, dest: Any) -> None:
        result = result_from_sockaddrs(source, dest, tlv=TLVS)
        assert result == ProxyResultUnknown(tlv=TLVS)
        assert build_header(result, version=1) == b'PROXY UNKNOWN\r\n'

    def test_unspec_family(self) -> None:
        assert result_from_sockaddrs(('192.0.2.1', 1), ('192.0.2.2', 2),
                                     family=AF_UNSPEC) == ProxyResultUnknown()

    def test_local(self) -> None:
        result = result_from_sockaddrs(('192.0.2.1', 1), ('192.0.2.2', 2),
                                       proxied=False, tlv=TLVS)
        assert result == ProxyResultLocal(tlv=TLVS)
        with pytest.raises(ProxyProtocolBuildError):
            build_header(result, version=1)
        assert build_header(result)[12:14] == h('20 00')

    def test_other_family(self) -> None:
        with pytest.raises(KeyError):
            result_from_sockaddrs(('a', 1), ('b', 2),
                                  family=socket.AddressFamily(17))

    @pytest.mark.parametrize('source, family', [
        (('not an ip', 1), None), (('192.0.2.1', 'http'), None),
        (('192.0.2.1', 65536), None), (('192.0.2.1', -1), AF_INET),
        ('/path', AF_INET), (None, AF_INET6)])
    def test_bad_addresses(self, source: Any,
                           family: Optional[socket.AddressFamily]) -> None:
        with pytest.raises(ProxyProtocolBuildError) as info:
            result_from_sockaddrs(source, ('192.0.2.2', 2), family=family)
        assert isinstance(info.value, ValueError)
