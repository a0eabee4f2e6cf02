"""TLVs (spec sections 2.2.1-2.2.8, cloud types) and the CRC32C checksum."""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from ipaddress import IPv4Address
from typing import Any

import pytest

from proxyprotocol import (ParsedHeader, ProxyProtocolBuildError,
                           ProxyProtocolSyntaxError, build_header,
                           parse_header)
from proxyprotocol import checksum
from proxyprotocol.result import ProxyResultIPv4, ProxyResultLocal
from proxyprotocol.tlv import (MAX_AUTHORITY_LENGTH, MAX_UNIQUE_ID_LENGTH,
                               TLV, AWSSubtype, AzureSubtype, ExtType,
                               ProxyProtocolExtTLV, ProxyProtocolSSLTLV,
                               ProxyProtocolTLV, SSLClient, Type, scan_tlvs,
                               tlv_field)
from vectors.golden import VALID_V2, Valid, crc32c_reference, h

CERT_DER = bytes.fromhex('3003020100')


def tlv(tlv_type: int, value: bytes) -> bytes:
    return bytes([tlv_type]) + struct.pack('!H', len(value)) + value


def golden(name: str) -> Valid:
    return next(v for v in VALID_V2 if v.name == name)


def roundtrip(tlvs: ProxyProtocolTLV) -> ProxyProtocolTLV:
    """Send ``tlvs`` in a v2 header and read them back."""
    result = ProxyResultIPv4((IPv4Address('192.0.2.1'), 1),
                             (IPv4Address('192.0.2.2'), 2), tlv=tlvs)
    parsed = parse_header(build_header(result))
    assert isinstance(parsed, ParsedHeader)
    return parsed.result.tlv


class TestEnums:
    def test_registered_types(self) -> None:
        assert [int(t) for t in (
            Type.PP2_TYPE_ALPN, Type.PP2_TYPE_AUTHORITY, Type.PP2_TYPE_CRC32C,
            Type.PP2_TYPE_NOOP, Type.PP2_TYPE_UNIQUE_ID, Type.PP2_TYPE_SSL,
            Type.PP2_SUBTYPE_SSL_VERSION, Type.PP2_SUBTYPE_SSL_CN,
            Type.PP2_SUBTYPE_SSL_CIPHER, Type.PP2_SUBTYPE_SSL_SIG_ALG,
            Type.PP2_SUBTYPE_SSL_KEY_ALG, Type.PP2_SUBTYPE_SSL_GROUP,
            Type.PP2_SUBTYPE_SSL_SIG_SCHEME, Type.PP2_SUBTYPE_SSL_CLIENT_CERT,
            Type.PP2_TYPE_NETNS)] == [1, 2, 3, 4, 5, 0x20, 0x21, 0x22, 0x23,
                                      0x24, 0x25, 0x26, 0x27, 0x28, 0x30]

    def test_ranges_and_cloud(self) -> None:
        assert (Type.PP2_TYPE_MIN_CUSTOM, Type.PP2_TYPE_MAX_CUSTOM) == \
            (0xE0, 0xEF)
        assert (Type.PP2_TYPE_MIN_EXPERIMENT, Type.PP2_TYPE_MAX_EXPERIMENT) \
            == (0xF0, 0xF7)
        assert (Type.PP2_TYPE_MIN_FUTURE, Type.PP2_TYPE_MAX_FUTURE) == \
            (0xF8, 0xFF)
        assert int(Type.PP2_TYPE_AWS) == 0xEA
        assert int(Type.PP2_TYPE_AZURE) == 0xEE
        assert int(Type.PP2_TYPE_GCP) == 0xE0
        assert int(AWSSubtype.PP2_SUBTYPE_AWS_VPCE_ID) == 0x01
        assert int(AzureSubtype.PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID) == 1

    def test_flags(self) -> None:
        assert [int(f) for f in SSLClient] == [1, 2, 4]
        assert [int(t) for t in ExtType] == [1, 2, 3, 4]

    def test_limits(self) -> None:
        assert MAX_AUTHORITY_LENGTH == 255
        assert MAX_UNIQUE_ID_LENGTH == 128

    @pytest.mark.parametrize('tlv_type, name', [
        (0x01, 'v2.tlv.alpn'), (0x02, 'v2.tlv.authority'),
        (0x20, 'v2.tlv.ssl'), (0x22, 'v2.tlv.ssl_cn'),
        (0xE0, 'v2.tlv.gcp'), (0xEA, 'v2.tlv.aws'), (0xEE, 'v2.tlv.azure'),
        (0xE1, 'v2.tlv.0xe1'), (0x00, 'v2.tlv.0x00')])
    def test_field_names(self, tlv_type: int, name: str) -> None:
        assert tlv_field(tlv_type) == name


class TestTLVBasics:
    """The generic, ordered, duplicate-keeping TLV list."""

    def test_entries_and_mapping(self) -> None:
        t = TLV.from_entries([(0x01, b'a'), (0xF0, b''), (0x01, b'b')])
        assert t.entries == ((0x01, b'a'), (0xF0, b''), (0x01, b'b'))
        assert t.get_all(0x01) == [b'a', b'b']
        assert t.get_all(0x02) == []
        assert t[0x01] == b'b'                     # the last value wins
        assert t.get(0x02) is None
        assert t.get(0x02, b'-') == b'-'
        assert 0xF0 in t and 0x02 not in t and not t.__contains__('x')
        assert list(t) == [0x01, 0xF0]
        assert len(t) == 2
        assert bool(t)
        assert bytes(t) == tlv(1, b'a') + tlv(0xF0, b'') + tlv(1, b'b')
        assert t.size == len(bytes(t))
        with pytest.raises(KeyError):
            t[0x02]

    def test_empty(self) -> None:
        t = TLV()
        assert not t
        assert t.entries == ()
        assert bytes(t) == b''
        assert t.size == 0
        assert repr(t) == 'TLV()'
        assert repr(ProxyProtocolTLV()) == 'ProxyProtocolTLV()'

    def test_lenient_data(self) -> None:
        # As in 0.11: a value cut short is kept short, fewer than 3 bytes
        # left over are dropped.
        t = TLV(tlv(1, b'ab') + b'\x02\x00\x05xy')
        assert t.entries == ((1, b'ab'), (2, b'xy'))
        assert TLV(tlv(1, b'ab') + b'\x02\x00').entries == ((1, b'ab'),)
        assert TLV(memoryview(tlv(5, b'z'))).entries == ((5, b'z'),)
        assert TLV(bytearray(tlv(5, b'z')))[5] == b'z'

    def test_data_keeps_order_and_duplicates(self) -> None:
        data = tlv(0x30, b'n') + tlv(0x01, b'a') + tlv(0x01, b'b')
        t = TLV(data)
        assert t.entries == ((0x30, b'n'), (0x01, b'a'), (0x01, b'b'))
        assert bytes(t) == data

    def test_init_overrides_and_sorts(self) -> None:
        data = tlv(0x30, b'n') + tlv(0x01, b'a') + tlv(0x01, b'b')
        t = TLV(data, init={0x01: b'c', 0x02: b'd', 0x100: b'dropped'})
        assert t.entries == ((0x01, b'c'), (0x02, b'd'), (0x30, b'n'))
        assert TLV(init={}).entries == ()

    def test_from_entries_rejects(self) -> None:
        with pytest.raises(ProxyProtocolBuildError):
            TLV.from_entries([(0x100, b'')])
        with pytest.raises(ProxyProtocolBuildError):
            TLV.from_entries([(-1, b'')])
        with pytest.raises(ProxyProtocolBuildError):
            TLV.from_entries([(0x01, bytes(0x10000))])
        with pytest.raises(ProxyProtocolBuildError):
            TLV(init={0x01: bytes(0x10000)})
        assert len(TLV.from_entries([(0x01, bytes(0xFFFF))]).entries[0][1]) \
            == 0xFFFF

    def test_equality_and_hash(self) -> None:
        a = TLV.from_entries([(1, b'a'), (2, b'b')])
        b = TLV.from_entries([(2, b'b'), (1, b'a')])
        assert a == b and hash(a) == hash(b)        # order-insensitive
        assert a != TLV.from_entries([(1, b'a')])
        assert a == {1: b'a', 2: b'b'}               # any mapping
        assert a != {1: b'a'}
        assert a != 'not a mapping'
        assert a.__eq__(0) is NotImplemented
        p = ProxyProtocolTLV.from_entries([(1, b'a'), (2, b'b')])
        assert p == a and a == p                     # subclass and base
        ssl = ProxyProtocolSSLTLV(has_ssl=True)
        assert ssl != ProxyProtocolTLV()             # unrelated TLV kinds
        assert ProxyProtocolExtTLV() != ssl
        assert {a, b, p} == {a}

    def test_repr(self) -> None:
        t = ProxyProtocolTLV.from_entries([(1, b'h2')])
        assert repr(t) == "ProxyProtocolTLV(b'\\x01\\x00\\x02h2')"

    def test_immutable(self) -> None:
        t = TLV.from_entries([(1, b'a')])
        with pytest.raises(AttributeError):
            t.extra = 1  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            t[1] = b'b'  # type: ignore[index]


class TestTyped:
    """Typed accessors and keyword construction for every known type."""

    def test_absent(self) -> None:
        t = ProxyProtocolTLV()
        assert t.alpn is None
        assert t.authority is None
        assert t.crc32c is None
        assert t.unique_id == b''
        assert t.netns is None
        assert t.noop is None
        assert t.aws_vpce_id is None
        assert t.azure_link_id is None
        assert t.gcp_psc_connection_id is None
        assert not t.ssl and t.ssl.client == 0 and t.ssl.verify == 1
        assert not t.ext
        assert not t.auto_crc32c

    def test_keywords(self) -> None:
        ssl = ProxyProtocolSSLTLV(has_ssl=True, version='TLSv1.3')
        t = ProxyProtocolTLV(
            alpn=b'h2', authority='b\u00fccher.example', crc32c=0x01020304,
            unique_id=b'\x00' * 128, ssl=ssl, netns='ns1',
            aws_vpce_id='vpce-0123456789abcdef0', azure_link_id=0x12345678,
            gcp_psc_connection_id=0x0102030405060708)
        assert t.alpn == b'h2'
        assert t.authority == 'b\u00fccher.example'
        assert t[Type.PP2_TYPE_AUTHORITY] == 'b\u00fccher.example'.encode()
        assert t.crc32c == 0x01020304
        assert t[Type.PP2_TYPE_CRC32C] == h('01020304')
        assert t.unique_id == bytes(128)
        assert t.ssl == ssl
        assert t.netns == 'ns1'
        assert t.aws_vpce_id == 'vpce-0123456789abcdef0'
        assert t[0xEA] == b'\x01vpce-0123456789abcdef0'
        assert t.azure_link_id == 0x12345678
        assert t[0xEE] == h('01 78563412')           # little-endian
        assert t.gcp_psc_connection_id == 0x0102030405060708
        assert t[0xE0] == h('0102030405060708')      # big-endian
        # Keyword-built TLVs are sorted by type.
        assert [e[0] for e in t.entries] == sorted(e[0] for e in t.entries)

    def test_keywords_round_trip_through_a_header(self) -> None:
        ssl = ProxyProtocolSSLTLV(
            has_ssl=True, has_cert_conn=True, has_cert_sess=True,
            verified=True, version='TLSv1.2', cn='client \u00e9', cipher='AES',
            sig_alg='RSA-SHA256', key_alg='RSA2048', group='x25519',
            sig_scheme='ecdsa_secp256r1_sha256', client_cert=CERT_DER)
        sent = ProxyProtocolTLV(
            alpn=b'\x00\xff', authority='a' * 255, unique_id=b'u' * 128,
            ssl=ssl, netns='netns', aws_vpce_id='vpce-1',
            azure_link_id=0xFFFFFFFF, gcp_psc_connection_id=2 ** 64 - 1)
        got = roundtrip(sent)
        assert got == sent
        assert got.entries == sent.entries
        assert got.alpn == b'\x00\xff'
        assert got.authority == 'a' * 255
        assert got.unique_id == b'u' * 128
        assert got.netns == 'netns'
        assert got.aws_vpce_id == 'vpce-1'
        assert got.azure_link_id == 0xFFFFFFFF
        assert got.gcp_psc_connection_id == 2 ** 64 - 1
        assert got.ssl == ssl
        assert got.ssl.cn == 'client \u00e9'
        assert got.ssl.client_cert == CERT_DER

    def test_utf8_authority_on_the_wire(self) -> None:
        sent = ProxyProtocolTLV(authority='b\u00fccher.example')
        assert roundtrip(sent).authority == 'b\u00fccher.example'

    def test_noop_accessor(self) -> None:
        t = ProxyProtocolTLV.from_entries([(Type.PP2_TYPE_NOOP, b'\x00\x00')])
        assert t.noop == b'\x00\x00'
        assert not t.ext                 # not carrying the 0.11 extension

    @pytest.mark.parametrize('kwargs', [
        {'authority': 'a' * 256},
        {'authority': '\u00e9' * 128},            # 256 bytes in UTF-8
        {'authority': '\udcff'},                  # not encodable
        {'unique_id': bytes(129)},
        {'netns': 'n\u00e9'},
        {'aws_vpce_id': 'vpce-\u00e9'},
        {'azure_link_id': 2 ** 32},
        {'azure_link_id': -1},
        {'gcp_psc_connection_id': 2 ** 64},
        {'gcp_psc_connection_id': -1},
        {'alpn': bytes(0x10000)},
    ])
    def test_keywords_rejected(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ProxyProtocolBuildError) as info:
            ProxyProtocolTLV(**kwargs)
        assert isinstance(info.value, ValueError)

    def test_keywords_override_data_and_init(self) -> None:
        t = ProxyProtocolTLV(tlv(1, b'old') + tlv(5, b'id'), init={1: b'mid'},
                             alpn=b'new')
        assert t.alpn == b'new'
        assert t.unique_id == b'id'

    def test_text_accessors_never_raise(self) -> None:
        # Leniently built TLVs may hold anything; reading them must not
        # raise UnicodeDecodeError.
        t = ProxyProtocolTLV.from_entries([
            (0x02, b'\xff\xfe'), (0x30, b'\xe9'), (0xEA, b'\x01\xff')])
        assert t.authority == '\ufffd\ufffd'
        assert t.netns == '\\xe9'
        assert t.aws_vpce_id == '\\xff'

    def test_cloud_values_of_the_wrong_shape(self) -> None:
        t = ProxyProtocolTLV.from_entries([
            (0xEA, b'\x02other'), (0xEE, h('02 01000000')), (0xE0, h('01')),
            (0x03, h('0102'))])
        assert t.aws_vpce_id is None       # another AWS sub-type
        assert t.azure_link_id is None     # another Azure sub-type
        assert t.gcp_psc_connection_id is None
        assert t.crc32c is None            # not 4 bytes
        t = ProxyProtocolTLV.from_entries([(0xEE, h('01 0100')),
                                           (0xEA, b''), (0xEA, b'\x01vpce-2'),
                                           (0xEA, b'\x01vpce-3')])
        assert t.azure_link_id is None     # wrong length
        assert t.aws_vpce_id == 'vpce-2'   # the first of that sub-type

    def test_golden_typed_values(self) -> None:
        t = golden('tcp4-every-plain-tlv').result.tlv
        assert t.alpn == b'h2'
        assert t.authority == 'example.com'
        assert t.noop == bytes(3)
        assert t.unique_id == h('deadbeef')
        assert t.netns == 'ns-1'
        assert t[0xE5] == h('aa') and t[0xF0] == b'' and t[0xFF] == h('0102')
        cloud = golden('tcp4-cloud').result.tlv
        assert cloud.aws_vpce_id == 'vpce-0123456789abcdef0'
        assert cloud.azure_link_id == 0x12345678
        assert cloud.gcp_psc_connection_id == 0x1234

    def test_parsed_accessors(self) -> None:
        for vector in VALID_V2:
            parsed = parse_header(vector.wire)
            assert isinstance(parsed, ParsedHeader)
            t = parsed.result.tlv
            assert isinstance(t, ProxyProtocolTLV)
            assert t.alpn == vector.result.tlv.alpn
            assert t.ssl == vector.result.tlv.ssl
            assert t.aws_vpce_id == vector.result.tlv.aws_vpce_id
            assert t.get_all(0x01) == [v for k, v in vector.entries if k == 1]


class TestScan:
    """The strict reader of a received TLV block, on its own."""

    @pytest.mark.parametrize('stray', [b'\x01', b'\x01\x00'])
    def test_stray_bytes_before_the_end(self, stray: bytes) -> None:
        # The block ends before the buffer does.
        data = tlv(0x01, b'h2') + stray + tlv(0x05, b'after the block')
        end = len(tlv(0x01, b'h2') + stray)
        with pytest.raises(ProxyProtocolSyntaxError) as info:
            scan_tlvs(data, 0, end)
        assert info.value.field == 'v2.tlv'
        assert info.value.offset == end - len(stray)

    def test_block_within_a_buffer(self) -> None:
        data = b'head' + tlv(0x03, bytes(4)) + tlv(0x01, b'a') + b'tail'
        tlvs, crc_at = scan_tlvs(data, 4, len(data) - 4)
        assert crc_at == 7
        assert tlvs.entries == ((0x03, bytes(4)), (0x01, b'a'))
        assert scan_tlvs(data, 4, 4)[0].entries == ()


class TestSSL:
    def test_golden(self) -> None:
        parsed = parse_header(golden('tcp6-ssl').wire)
        assert isinstance(parsed, ParsedHeader)
        ssl = parsed.result.tlv.ssl
        assert ssl.client == 0x07
        assert ssl.has_ssl and ssl.has_cert_conn and ssl.has_cert_sess
        assert ssl.verify == 0 and ssl.verified
        assert ssl.version == 'TLSv1.3'
        assert ssl.cn == 'client.example'
        assert ssl.cipher == 'TLS_AES_128_GCM_SHA256'
        assert ssl.sig_alg == 'RSA-SHA256'
        assert ssl.key_alg == 'RSA2048'
        assert ssl.group == 'x25519'
        assert ssl.sig_scheme == 'rsa_pss_rsae_sha256'
        assert ssl.client_cert == CERT_DER
        assert [t for t, _ in ssl.entries] == list(range(0x21, 0x29))
        assert bytes(ssl) == golden('tcp6-ssl').entries[0][1]

    def test_defaults(self) -> None:
        ssl = ProxyProtocolSSLTLV()
        assert (ssl.client, ssl.verify) == (0, 1)
        assert not ssl.has_ssl and not ssl.verified
        assert ssl.version is None and ssl.cn is None
        assert ssl.cipher is None and ssl.sig_alg is None
        assert ssl.key_alg is None and ssl.group is None
        assert ssl.sig_scheme is None and ssl.client_cert is None
        assert bytes(ssl) == h('00 00000001')
        assert not ssl
        # Fewer than 5 bytes leave the defaults.
        assert ProxyProtocolSSLTLV(b'\x01\x00') == ssl

    def test_flags_set_clear_keep(self) -> None:
        base = h('05 00000025')  # SSL + CERT_SESS, verify 37
        ssl = ProxyProtocolSSLTLV(base, has_ssl=False)
        assert (ssl.client, ssl.verify) == (4, 37)
        ssl = ProxyProtocolSSLTLV(base, has_cert_conn=True, verified=True)
        assert (ssl.client, ssl.verify) == (7, 0)
        ssl = ProxyProtocolSSLTLV(base, has_cert_sess=False, verified=False)
        assert (ssl.client, ssl.verify) == (1, 1)
        ssl = ProxyProtocolSSLTLV(base, verify=0x01020304)
        assert ssl.verify == 0x01020304 and not ssl.verified
        assert ProxyProtocolSSLTLV(base).client == 5

    def test_bool(self) -> None:
        assert ProxyProtocolSSLTLV(has_ssl=True)
        assert ProxyProtocolSSLTLV(verified=True)
        assert ProxyProtocolSSLTLV(cipher='x')

    def test_equality(self) -> None:
        # 0.11 compared every SSL TLV equal; here the values count.
        assert ProxyProtocolSSLTLV(has_ssl=True) != \
            ProxyProtocolSSLTLV(has_ssl=False)
        assert ProxyProtocolSSLTLV(verify=0) != ProxyProtocolSSLTLV(verify=2)
        assert ProxyProtocolSSLTLV(cn='a') != ProxyProtocolSSLTLV(cn='b')
        a = ProxyProtocolSSLTLV(has_ssl=True, cipher='x', version='y')
        b = ProxyProtocolSSLTLV(has_ssl=True, version='y', cipher='x')
        assert a == b and hash(a) == hash(b)
        assert hash(a) != hash(ProxyProtocolSSLTLV(cipher='x', version='y'))

    def test_sorted_sub_tlvs_and_repr(self) -> None:
        ssl = ProxyProtocolSSLTLV(key_alg='k', version='v')
        assert bytes(ssl) == h('00 00000001') + tlv(0x21, b'v') + \
            tlv(0x25, b'k')
        assert repr(ssl) == f'ProxyProtocolSSLTLV({bytes(ssl)!r})'
        assert ssl.size == len(bytes(ssl))

    @pytest.mark.parametrize('kwargs', [{'version': 'TLS\u00e9'},
                                        {'cipher': '\u00e9'},
                                        {'cn': '\udcff'}])
    def test_rejected(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ProxyProtocolBuildError):
            ProxyProtocolSSLTLV(**kwargs)

    def test_empty_ssl_keyword_is_not_sent(self) -> None:
        assert Type.PP2_TYPE_SSL not in ProxyProtocolTLV(
            ssl=ProxyProtocolSSLTLV())

    def test_unflagged_sub_tlvs_accepted_on_the_wire(self) -> None:
        # Sub-TLVs that are not text are taken as they are.
        value = h('00 00000000') + tlv(0x28, b'\xff\x00') + tlv(0x2f, b'\xff')
        parsed = parse_header(build_header(ProxyResultLocal(
            tlv=ProxyProtocolTLV.from_entries([(0x20, value)]))))
        assert isinstance(parsed, ParsedHeader)
        assert parsed.result.tlv.ssl.client_cert == b'\xff\x00'
        assert parsed.result.tlv.ssl[0x2f] == b'\xff'


class TestExt:
    """The 0.11 extension carried in a NOOP TLV."""

    def test_values(self) -> None:
        cert = {'subject': [[['commonName', 'c']]]}
        ext = ProxyProtocolExtTLV(compression='zlib', secret_bits=256,
                                  peercert=cert, dnsbl='bl.example')
        assert ext.compression == 'zlib'
        assert ext.secret_bits == 256
        assert ext.peercert == cert
        assert ext.dnsbl == 'bl.example'
        assert bytes(ext).startswith(ProxyProtocolExtTLV.MAGIC_PREFIX)
        assert ext[ExtType.PP2_TYPE_EXT_PEERCERT] == zlib.compress(
            json.dumps(cert).encode('ascii'))
        t = ProxyProtocolTLV(ext=ext)
        assert t[Type.PP2_TYPE_NOOP] == bytes(ext)
        assert t.ext == ext
        assert roundtrip(t).ext == ext

    def test_absent_and_foreign(self) -> None:
        ext = ProxyProtocolExtTLV()
        assert not ext
        assert ext.compression is None and ext.secret_bits is None
        assert ext.peercert is None and ext.dnsbl is None
        assert bytes(ext) == ProxyProtocolExtTLV.MAGIC_PREFIX
        assert not ProxyProtocolExtTLV(tlv(1, b'x'))   # no magic prefix
        assert ProxyProtocolTLV(ext=ProxyProtocolExtTLV()).noop is None

    def test_wrong_shapes(self) -> None:
        prefix = ProxyProtocolExtTLV.MAGIC_PREFIX
        ext = ProxyProtocolExtTLV(prefix + tlv(2, b'\x01') + tlv(3, b'junk'))
        assert ext.secret_bits is None
        assert ext.peercert is None
        ext = ProxyProtocolExtTLV(prefix + tlv(3, zlib.compress(b'\xff')))
        assert ext.peercert is None


class TestChecksum:
    """CRC32C: RFC 4960 appendix B, both implementations."""

    def test_known_vectors(self) -> None:
        for crc in (checksum.crc32c, checksum.crc32c_pure, crc32c_reference):
            assert crc(b'123456789') == 0xE3069283
            assert crc(b'') == 0
            # RFC 3720 B.4: 32 bytes of zeros, of 0xFF, ascending.
            assert crc(bytes(32)) == 0x8A9136AA
            assert crc(b'\xff' * 32) == 0x62A8AB43
            assert crc(bytes(range(32))) == 0x46DD794E

    def test_chaining(self) -> None:
        for crc in (checksum.crc32c, checksum.crc32c_pure):
            assert crc(b'6789', crc(b'12345')) == 0xE3069283

    def test_pure_matches_accelerated_on_random_data(self) -> None:
        rng = random.Random(2024)
        for length in list(range(0, 70)) + [255, 256, 1000, 4097]:
            data = rng.randbytes(length)
            start = rng.randrange(0, 2 ** 32)
            assert checksum.crc32c_pure(data) == checksum.crc32c(data)
            assert checksum.crc32c_pure(data, start) == \
                checksum.crc32c(data, start)
        data = os.urandom(333)
        assert checksum.crc32c_pure(data) == crc32c_reference(data)
        # Views at odd offsets and other buffer types.
        view: Any = memoryview(data)[3:]
        assert checksum.crc32c_pure(view) == checksum.crc32c(data[3:])
        array: Any = bytearray(data)
        assert checksum.crc32c_pure(array) == checksum.crc32c(data)

    def test_accelerated_in_use(self) -> None:
        # crc32c is a dependency of the default install.
        assert checksum.ACCELERATED

    def test_auto_mode(self) -> None:
        t = ProxyProtocolTLV(unique_id=b'test', auto_crc32c=True)
        assert t.auto_crc32c
        assert t.size == len(tlv(5, b'test')) + 7
        with pytest.raises(ValueError):
            bytes(t)
        assert repr(t) == \
            "ProxyProtocolTLV(b'\\x05\\x00\\x04test', auto_crc32c=True)"
        # 0.11's published vectors.
        assert t.with_checksum(b'one', b'two', b'three').crc32c == 1851355838
        assert t.with_checksum(b'four', b'five').crc32c == 3148507994
        done = t.with_checksum(b'one', b'two', b'three')
        assert not done.auto_crc32c
        assert done.verify_checksum(b'one', b'two', b'three')
        assert not done.verify_checksum(b'one', b'two')
        assert done.with_checksum(b'x') is done

    def test_auto_mode_off_when_a_value_is_given(self) -> None:
        t = ProxyProtocolTLV(crc32c=5, auto_crc32c=True)
        assert not t.auto_crc32c
        assert t.crc32c == 5

    def test_auto_mode_replaces_an_inherited_crc(self) -> None:
        t = ProxyProtocolTLV(tlv(3, bytes(4)) + tlv(1, b'a'),
                             auto_crc32c=True)
        assert Type.PP2_TYPE_CRC32C not in t
        done = t.with_checksum(b'head')
        assert done.get_all(Type.PP2_TYPE_CRC32C) != []
        assert done.verify_checksum(b'head')

    def test_verify_checksum(self) -> None:
        assert ProxyProtocolTLV().verify_checksum(b'anything')
        # A CRC TLV of the wrong length never verifies.
        bad = ProxyProtocolTLV.from_entries([(3, b'\x00')])
        assert not bad.verify_checksum()
        # Verified over the TLVs in their received order.
        vector = golden('tcp4-crc-first-unsorted')
        parsed = parse_header(vector.wire)
        assert isinstance(parsed, ParsedHeader)
        assert parsed.result.tlv.verify_checksum(vector.wire[:28])
        assert not parsed.result.tlv.verify_checksum(vector.wire[:27])
