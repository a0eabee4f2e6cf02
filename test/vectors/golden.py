"""Golden headers written byte by byte from the spec (doc/proxy-protocol.txt).

Every v2 header is spelled out in hex, field by field, so that a reader can
check it against the spec's layout without running the codec. CRC32C values
were computed with :func:`crc32c_reference`, a bit-at-a-time CRC written from
RFC 4960 appendix B, independent of :mod:`proxyprotocol.checksum`; the tests
re-check them with it.

"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from socket import SOCK_DGRAM, SOCK_STREAM

from proxyprotocol.errors import (ProxyProtocolChecksumError,
                                  ProxyProtocolError,
                                  ProxyProtocolSyntaxError,
                                  ProxyProtocolTooLongError)
from proxyprotocol.result import (ProxyResult, ProxyResultIPv4,
                                  ProxyResultIPv6, ProxyResultLocal,
                                  ProxyResultUnix, ProxyResultUnknown)
from proxyprotocol.tlv import ProxyProtocolTLV

__all__ = ['Valid', 'Invalid', 'VALID_V1', 'VALID_V2', 'INVALID_V1',
           'INVALID_V2', 'PACKED_0_11', 'SIG', 'crc32c_reference', 'h']


def crc32c_reference(data: bytes) -> int:
    """CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def h(text: str) -> bytes:
    """Hex with spaces and ``|`` separators, for readable vectors."""
    return bytes.fromhex(text.replace('|', ' '))


@dataclass(frozen=True)
class Valid:
    """A header that must parse to ``result`` and take all of ``wire``."""

    name: str
    wire: bytes
    result: ProxyResult
    #: The TLV entries, in wire order, duplicates included.
    entries: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class Invalid:
    """A header that must be rejected with ``error`` naming ``field``."""

    name: str
    wire: bytes
    error: type[ProxyProtocolError]
    field: str | None = field(default=None)


def _tlv(*entries: tuple[int, bytes]) -> ProxyProtocolTLV:
    return ProxyProtocolTLV.from_entries(entries)


def _v4(src: str, sport: int, dst: str, dport: int, proto: object = SOCK_STREAM,
        *entries: tuple[int, bytes]) -> ProxyResultIPv4:
    return ProxyResultIPv4((IPv4Address(src), sport), (IPv4Address(dst), dport),
                           protocol=proto,  # type: ignore[arg-type]
                           tlv=_tlv(*entries))


def _v6(src: str, sport: int, dst: str, dport: int, proto: object = SOCK_STREAM,
        *entries: tuple[int, bytes]) -> ProxyResultIPv6:
    return ProxyResultIPv6((IPv6Address(src), sport), (IPv6Address(dst), dport),
                           protocol=proto,  # type: ignore[arg-type]
                           tlv=_tlv(*entries))


# --------------------------------------------------------------------- v1

_MAX6 = ':'.join(['ffff'] * 8)

VALID_V1: tuple[Valid, ...] = (
    Valid('tcp4', b'PROXY TCP4 192.0.2.1 198.51.100.2 54321 443\r\n',
          _v4('192.0.2.1', 54321, '198.51.100.2', 443)),
    Valid('tcp4-longest (56 bytes, spec 2.1)',
          b'PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n',
          _v4('255.255.255.255', 65535, '255.255.255.255', 65535)),
    Valid('tcp4-zeros', b'PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n',
          _v4('0.0.0.0', 0, '10.0.0.1', 0)),
    Valid('tcp6', b'PROXY TCP6 2001:db8::1 2001:DB8::2 8080 80\r\n',
          _v6('2001:db8::1', 8080, '2001:db8::2', 80)),
    Valid('tcp6-longest (104 bytes, spec 2.1)',
          b'PROXY TCP6 ' + _MAX6.encode() + b' ' + _MAX6.encode()
          + b' 65535 65535\r\n',
          _v6(_MAX6, 65535, _MAX6, 65535)),
    Valid('tcp6-mapped-and-any', b'PROXY TCP6 ::ffff:192.0.2.1 :: 1 2\r\n',
          _v6('::ffff:192.0.2.1', 1, '::', 2)),
    Valid('unknown-short (15 bytes)', b'PROXY UNKNOWN\r\n',
          ProxyResultUnknown()),
    Valid('unknown-longest (107 bytes, spec 2.1)',
          b'PROXY UNKNOWN ' + _MAX6.encode() + b' ' + _MAX6.encode()
          + b' 65535 65535\r\n', ProxyResultUnknown()),
    Valid('unknown-anything-until-crlf',
          b'PROXY UNKNOWN whatever \x00\xff\r is ignored\r\n',
          ProxyResultUnknown()),
)

INVALID_V1: tuple[Invalid, ...] = (
    Invalid('not-proxy', b'PROXI TCP4 1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.signature'),
    Invalid('lower-case', b'proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'signature'),
    Invalid('family-tcp5', b'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.family'),
    Invalid('family-udp4', b'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.family'),
    Invalid('family-lower', b'PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.family'),
    Invalid('unknown-glued', b'PROXY UNKNOWNX\r\n',
            ProxyProtocolSyntaxError, 'v1.family'),
    Invalid('double-space', b'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('tab', b'PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.family'),
    Invalid('ipv4-leading-zero', b'PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv4-octet-256', b'PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.dest'),
    Invalid('ipv4-three-octets', b'PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv4-five-octets', b'PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv4-empty-octet', b'PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv4-trailing-dot', b'PROXY TCP4 1.2.3.4 5.6.7. 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.dest'),
    Invalid('ipv4-hex', b'PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv4-in-tcp6', b'PROXY TCP6 1.2.3.4 ::1 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv6-in-tcp4', b'PROXY TCP4 1.2.3.4 ::1 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.dest'),
    Invalid('ipv6-zone-id', b'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv6-nine-groups', b'PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.dest'),
    Invalid('ipv6-two-double-colons', b'PROXY TCP6 1::2::3 ::1 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('ipv6-brackets', b'PROXY TCP6 [::1] ::1 1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('port-leading-zero', b'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source_port'),
    Invalid('port-too-big', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n',
            ProxyProtocolSyntaxError, 'v1.dest_port'),
    Invalid('port-six-digits', b'PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source_port'),
    Invalid('port-plus', b'PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source_port'),
    Invalid('port-minus', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n',
            ProxyProtocolSyntaxError, 'v1.dest_port'),
    Invalid('port-underscore', b'PROXY TCP4 1.2.3.4 5.6.7.8 1_0 2\r\n',
            ProxyProtocolSyntaxError, 'v1.source_port'),
    Invalid('port-trailing-space', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n',
            ProxyProtocolSyntaxError, 'v1'),
    Invalid('port-nul', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n',
            ProxyProtocolSyntaxError, 'v1.dest_port'),
    Invalid('port-unicode-digit', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 \u0662\r\n'
            .encode(), ProxyProtocolSyntaxError, 'v1.dest_port'),
    Invalid('missing-dest-port', b'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
            ProxyProtocolSyntaxError, 'v1.dest_port'),
    Invalid('extra-field', b'PROXY TCP6 ::1 ::2 1 2 3\r\n',
            ProxyProtocolSyntaxError, 'v1'),
    Invalid('family-only', b'PROXY TCP4\r\n',
            ProxyProtocolSyntaxError, 'v1.source'),
    Invalid('nothing', b'PROXY \r\n', ProxyProtocolSyntaxError, 'v1.family'),
    Invalid('bare-lf', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n',
            ProxyProtocolSyntaxError, 'v1.crlf'),
    Invalid('unknown-bare-lf', b'PROXY UNKNOWN\n',
            ProxyProtocolSyntaxError, 'v1.crlf'),
    Invalid('cr-then-garbage', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n',
            ProxyProtocolSyntaxError, 'v1.dest_port'),
    Invalid('107-bytes-without-lf',
            b'PROXY UNKNOWN ' + b'x' * 93,
            ProxyProtocolTooLongError, 'v1.crlf'),
    Invalid('108-bytes-without-lf',
            b'PROXY UNKNOWN ' + b'x' * 94,
            ProxyProtocolTooLongError, 'v1.crlf'),
    Invalid('108-byte-line',
            b'PROXY UNKNOWN ' + b'x' * 92 + b'\r\n',
            ProxyProtocolTooLongError, 'v1.crlf'),
)

# --------------------------------------------------------------------- v2

#: The 12-byte v2 signature (spec section 2.2).
SIG = h('0d0a0d0a 000d0a51 5549540a')

_BLOCK4 = h('c0000201 | c6336402 | d431 | 01bb')  # 192.0.2.1:54321 -> .100.2:443
_BLOCK6 = h('20010db8 00000000 00000000 00000001'
            '20010db8 00000000 00000000 00000002 | 1f90 | 0050')
_UNIX_SRC = b'/tmp/src.sock'.ljust(108, b'\x00')
_UNIX_DST = b'/run/dst'.ljust(108, b'\x00')
_ABSTRACT = b'\x00abstract-src'.ljust(108, b'\x00')

_SSL_VALUE = (
    h('07 | 00000000')                                     # client, verify
    + h('21 0007') + b'TLSv1.3'
    + h('22 000e') + b'client.example'
    + h('23 0016') + b'TLS_AES_128_GCM_SHA256'
    + h('24 000a') + b'RSA-SHA256'
    + h('25 0007') + b'RSA2048'
    + h('26 0006') + b'x25519'
    + h('27 0013') + b'rsa_pss_rsae_sha256'
    + h('28 0005 3003020100'))

_TLVS = (
    (0x01, b'h2'),                               # ALPN
    (0x02, b'example.com'),                      # AUTHORITY
    (0x04, b'\x00\x00\x00'),                     # NOOP
    (0x05, h('deadbeef')),                       # UNIQUE_ID
    (0x30, b'ns-1'),                             # NETNS
    (0xE5, h('aa')),                             # custom range
    (0xF0, b''),                                 # experimental range
    (0xFF, h('0102')),                           # future range
)

VALID_V2: tuple[Valid, ...] = (
    Valid('tcp4', SIG + h('21 11 000c') + _BLOCK4,
          _v4('192.0.2.1', 54321, '198.51.100.2', 443)),
    Valid('udp4', SIG + h('21 12 000c | cb007101 cb007102 | 0035 0035'),
          _v4('203.0.113.1', 53, '203.0.113.2', 53, SOCK_DGRAM)),
    Valid('inet-unspec-protocol', SIG + h('21 10 000c') + _BLOCK4,
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, None)),
    Valid('tcp6', SIG + h('21 21 0024') + _BLOCK6,
          _v6('2001:db8::1', 8080, '2001:db8::2', 80)),
    Valid('udp6-mapped', SIG + h(
        '21 22 0024 | 00000000 00000000 0000ffff c0000201'
        '| fe800000 00000000 00000000 00000001 | ffff 0000'),
        _v6('::ffff:192.0.2.1', 65535, 'fe80::1', 0, SOCK_DGRAM)),
    Valid('unix-stream', SIG + h('21 31 00d8') + _UNIX_SRC + _UNIX_DST,
          ProxyResultUnix('/tmp/src.sock', '/run/dst', protocol=SOCK_STREAM)),
    Valid('unix-dgram-abstract', SIG + h('21 32 00d8') + _ABSTRACT + _UNIX_DST,
          ProxyResultUnix('\x00abstract-src', '/run/dst',
                          protocol=SOCK_DGRAM)),
    Valid('local', SIG + h('20 00 0000'), ProxyResultLocal()),
    Valid('local-inet-block-then-tlv',
          SIG + h('20 11 0011') + _BLOCK4 + h('01 0002') + b'h2',
          ProxyResultLocal(tlv=_tlv((0x01, b'h2'))), ((0x01, b'h2'),)),
    Valid('local-unspec-tlv', SIG + h('20 00 0007 | 04 0004 00000000'),
          ProxyResultLocal(tlv=_tlv((0x04, bytes(4)))), ((0x04, bytes(4)),)),
    Valid('proxy-unspec-tlv', SIG + h('21 00 0008 | 05 0005') + b'id001',
          ProxyResultUnknown(tlv=_tlv((0x05, b'id001'))),
          ((0x05, b'id001'),)),
    Valid('proxy-unspec-stream', SIG + h('21 01 0000'), ProxyResultUnknown()),
    Valid('tcp4-every-plain-tlv', SIG + h('21 11 003f') + _BLOCK4
          + h('01 0002') + b'h2' + h('02 000b') + b'example.com'
          + h('04 0003 000000') + h('05 0004 deadbeef')
          + h('30 0004') + b'ns-1' + h('e5 0001 aa') + h('f0 0000')
          + h('ff 0002 0102'),
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, SOCK_STREAM, *_TLVS),
          _TLVS),
    Valid('tcp4-duplicates', SIG + h('21 11 0024') + _BLOCK4
          + h('01 0002') + b'h2' + h('01 0008') + b'http/1.1'
          + h('04 0000') + h('01 0002') + b'h3',
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, SOCK_STREAM,
              (0x01, b'h2'), (0x01, b'http/1.1'), (0x04, b''), (0x01, b'h3')),
          ((0x01, b'h2'), (0x01, b'http/1.1'), (0x04, b''), (0x01, b'h3'))),
    Valid('tcp6-ssl', SIG + h('21 21 009e') + _BLOCK6 + h('20 0077')
          + _SSL_VALUE,
          _v6('2001:db8::1', 8080, '2001:db8::2', 80, SOCK_STREAM,
              (0x20, _SSL_VALUE)),
          ((0x20, _SSL_VALUE),)),
    Valid('tcp4-cloud', SIG + h('21 11 0039') + _BLOCK4
          + h('ea 0017 01') + b'vpce-0123456789abcdef0'
          + h('ee 0005 01 78563412') + h('e0 0008 00000000 00001234'),
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, SOCK_STREAM,
              (0xEA, b'\x01vpce-0123456789abcdef0'),
              (0xEE, h('01 78563412')), (0xE0, h('00000000 00001234'))),
          ((0xEA, b'\x01vpce-0123456789abcdef0'),
           (0xEE, h('01 78563412')), (0xE0, h('00000000 00001234')))),
    Valid('tcp4-crc-last', SIG + h('21 11 0018') + _BLOCK4
          + h('05 0002 abcd') + h('03 0004 9e255fd2'),
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, SOCK_STREAM,
              (0x05, h('abcd')), (0x03, h('9e255fd2'))),
          ((0x05, h('abcd')), (0x03, h('9e255fd2')))),
    Valid('tcp4-crc-first-unsorted', SIG + h('21 11 001d') + _BLOCK4
          + h('03 0004 b2f14457') + h('30 0002') + b'ns' + h('01 0002') + b'h2',
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, SOCK_STREAM,
              (0x03, h('b2f14457')), (0x30, b'ns'), (0x01, b'h2')),
          ((0x03, h('b2f14457')), (0x30, b'ns'), (0x01, b'h2'))),
    Valid('tcp4-crc-between-duplicates', SIG + h('21 11 0023') + _BLOCK4
          + h('01 0002') + b'h2' + h('03 0004 efbc0ff0') + h('01 0002') + b'h3'
          + h('04 0003 000000'),
          _v4('192.0.2.1', 54321, '198.51.100.2', 443, SOCK_STREAM,
              (0x01, b'h2'), (0x03, h('efbc0ff0')), (0x01, b'h3'),
              (0x04, bytes(3))),
          ((0x01, b'h2'), (0x03, h('efbc0ff0')), (0x01, b'h3'),
           (0x04, bytes(3)))),
    Valid('local-crc', SIG + h('20 00 0007 | 03 0004 a9b87e8f'),
          ProxyResultLocal(tlv=_tlv((0x03, h('a9b87e8f')))),
          ((0x03, h('a9b87e8f')),)),
)

INVALID_V2: tuple[Invalid, ...] = (
    Invalid('bad-signature-last-byte', SIG[:11] + b'\x0b' + h('21 11 000c')
            + _BLOCK4, ProxyProtocolSyntaxError, 'v2.signature'),
    Invalid('version-1', SIG + h('11 11 000c') + _BLOCK4,
            ProxyProtocolSyntaxError, 'v2.version'),
    Invalid('version-3', SIG + h('31 11 000c') + _BLOCK4,
            ProxyProtocolSyntaxError, 'v2.version'),
    Invalid('command-2', SIG + h('22 11 000c') + _BLOCK4,
            ProxyProtocolSyntaxError, 'v2.command'),
    Invalid('command-f', SIG + h('2f 11 000c') + _BLOCK4,
            ProxyProtocolSyntaxError, 'v2.command'),
    Invalid('family-4', SIG + h('21 41 000c') + _BLOCK4,
            ProxyProtocolSyntaxError, 'v2.family'),
    Invalid('protocol-3', SIG + h('21 13 000c') + _BLOCK4,
            ProxyProtocolSyntaxError, 'v2.protocol'),
    Invalid('inet-block-11', SIG + h('21 11 000b') + _BLOCK4[:11],
            ProxyProtocolSyntaxError, 'v2.length'),
    Invalid('inet-block-0', SIG + h('21 11 0000'),
            ProxyProtocolSyntaxError, 'v2.length'),
    Invalid('inet6-block-35', SIG + h('21 21 0023') + _BLOCK6[:35],
            ProxyProtocolSyntaxError, 'v2.length'),
    Invalid('unix-block-215', SIG + h('21 31 00d7') + (_UNIX_SRC + _UNIX_DST)[:215],
            ProxyProtocolSyntaxError, 'v2.length'),
    Invalid('local-inet-block-5', SIG + h('20 11 0005') + _BLOCK4[:5],
            ProxyProtocolSyntaxError, 'v2.length'),
    Invalid('stray-byte', SIG + h('21 11 000d') + _BLOCK4 + h('01'),
            ProxyProtocolSyntaxError, 'v2.tlv'),
    Invalid('stray-two-bytes', SIG + h('21 11 000e') + _BLOCK4 + h('0100'),
            ProxyProtocolSyntaxError, 'v2.tlv'),
    Invalid('unspec-stray-bytes', SIG + h('21 00 0002 0000'),
            ProxyProtocolSyntaxError, 'v2.tlv'),
    Invalid('tlv-overrun', SIG + h('21 11 0011') + _BLOCK4 + h('01 0005 6832'),
            ProxyProtocolSyntaxError, 'v2.tlv.alpn'),
    Invalid('crc-mismatch', SIG + h('21 11 0013') + _BLOCK4
            + h('03 0004 00000000'), ProxyProtocolChecksumError,
            'v2.tlv.crc32c'),
    Invalid('crc-three-bytes', SIG + h('21 11 0012') + _BLOCK4
            + h('03 0003 000000'), ProxyProtocolSyntaxError, 'v2.tlv.crc32c'),
    Invalid('crc-twice', SIG + h('21 11 001a') + _BLOCK4
            + h('03 0004 00000000 03 0004 00000000'),
            ProxyProtocolSyntaxError, 'v2.tlv.crc32c'),
    Invalid('authority-256', SIG + h('21 11 010f') + _BLOCK4 + h('02 0100')
            + b'a' * 256, ProxyProtocolSyntaxError, 'v2.tlv.authority'),
    Invalid('authority-not-utf8', SIG + h('21 11 0011') + _BLOCK4
            + h('02 0002 c328'), ProxyProtocolSyntaxError, 'v2.tlv.authority'),
    Invalid('unique-id-129', SIG + h('21 11 0090') + _BLOCK4 + h('05 0081')
            + b'u' * 129, ProxyProtocolSyntaxError, 'v2.tlv.unique_id'),
    Invalid('netns-not-ascii', SIG + h('21 11 0011') + _BLOCK4
            + h('30 0002 c3a9'), ProxyProtocolSyntaxError, 'v2.tlv.netns'),
    Invalid('ssl-4-bytes', SIG + h('21 11 0013') + _BLOCK4
            + h('20 0004 01000000'), ProxyProtocolSyntaxError, 'v2.tlv.ssl'),
    Invalid('ssl-stray', SIG + h('21 11 0016') + _BLOCK4
            + h('20 0007 01 00000000 2100'), ProxyProtocolSyntaxError,
            'v2.tlv.ssl'),
    Invalid('ssl-sub-overrun', SIG + h('21 11 0018') + _BLOCK4
            + h('20 0009 01 00000000 21 0009 54'), ProxyProtocolSyntaxError,
            'v2.tlv.ssl_version'),
    Invalid('ssl-cipher-not-ascii', SIG + h('21 11 0018') + _BLOCK4
            + h('20 0009 01 00000000 23 0001 ff'), ProxyProtocolSyntaxError,
            'v2.tlv.ssl_cipher'),
    Invalid('ssl-cn-not-utf8', SIG + h('21 11 0018') + _BLOCK4
            + h('20 0009 01 00000000 22 0001 ff'), ProxyProtocolSyntaxError,
            'v2.tlv.ssl_cn'),
    Invalid('too-long-for-default-cap', SIG + h('21 00 3ff1')
            + h('04 3fee') + bytes(0x3FEE), ProxyProtocolTooLongError,
            'v2.length'),
)

#: Headers 0.11's ``ProxyProtocolV2().pack`` wrote (always with a CRC32C TLV);
#: from the 0.11.3 test suite's published expectations.
PACKED_0_11: tuple[Valid, ...] = (
    Valid('0.11-ipv4', SIG + h('21 11 0013 | 00000000 7f000001 | 0000 0019'
                               '| 03 0004 25c91172'),
          _v4('0.0.0.0', 0, '127.0.0.1', 25, SOCK_STREAM,
              (0x03, h('25c91172')))),
    Valid('0.11-local', SIG + h('20 00 0007 | 03 0004 a9b87e8f'),
          ProxyResultLocal(tlv=_tlv((0x03, h('a9b87e8f'))))),
    Valid('0.11-unknown', SIG + h('21 00 0007 | 03 0004 3ec9894e'),
          ProxyResultUnknown(tlv=_tlv((0x03, h('3ec9894e'))))),
)
