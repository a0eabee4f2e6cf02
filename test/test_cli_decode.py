"""``proxyprotocol decode`` (and ``send --dry-run``) on crafted vectors."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from proxyprotocol import build_header
from proxyprotocol.cli import main
from proxyprotocol.cli.decode import looks_like_hex, parse_hex, unescape
from proxyprotocol.cli.endpoints import (Endpoint, parse_endpoint,
                                         parse_header_address)
from proxyprotocol.cli.format import tlv_name
from proxyprotocol.result import (ProxyResultIPv4, ProxyResultIPv6,
                                  ProxyResultLocal, ProxyResultUnix,
                                  ProxyResultUnknown)
from proxyprotocol.tlv import ProxyProtocolSSLTLV, ProxyProtocolTLV
from proxyprotocol.v2 import V2_SIGNATURE

V1_LINE = b'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'


def _ipv4(tlv: ProxyProtocolTLV = ProxyProtocolTLV()) -> ProxyResultIPv4:
    return ProxyResultIPv4((IPv4Address('192.0.2.1'), 56324),
                           (IPv4Address('198.51.100.2'), 443),
                           protocol=socket.SOCK_STREAM, tlv=tlv)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(['decode', *argv])
    out, err = capsys.readouterr()
    assert not err
    return status, out


def _json(capsys: pytest.CaptureFixture[str], data: bytes
          ) -> tuple[int, dict[str, Any]]:
    status, out = _run(capsys, '--json', '--hex', data.hex())
    return status, json.loads(out)


CERT_DER = bytes.fromhex('3082010a0282010100') + b'\x01' * 40

FULL_TLV = ProxyProtocolTLV.from_entries([
    (0x01, b'h2'),
    (0x02, b'example.com'),
    (0x04, b'\x00\x00'),
    (0x05, b'\x01\x02\x03\xff'),
    (0x20, bytes(ProxyProtocolSSLTLV(
        has_ssl=True, has_cert_conn=True, has_cert_sess=True, verify=0,
        version='TLSv1.3', cn='client.example', cipher='TLS_AES_128_GCM_SHA256',
        sig_alg='SHA256', key_alg='RSA2048', group='X25519',
        sig_scheme='rsa_pss_rsae_sha256', client_cert=CERT_DER))),
    (0x30, b'blue'),
    (0xE0, (1234567890123).to_bytes(8, 'big')),
    (0xEA, b'\x01vpce-0abc'),
    (0xEE, b'\x01' + (4242).to_bytes(4, 'little')),
    (0xF1, b'\xca\xfe'),
    (0x99, b''),
])


# --- valid headers ---------------------------------------------------------

def test_v1_text_argument(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _run(
        capsys, 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\\r\\nGET /')
    assert status == 0
    assert 'PROXY protocol v1 header, 45 bytes' in out
    assert 'source       192.0.2.1:56324' in out
    assert 'destination  198.51.100.2:443' in out
    assert "trailing data: 5 bytes after the header: 'GET /'" in out


def test_v1_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, desc = _json(capsys, V1_LINE)
    assert status == 0
    assert desc['valid'] is True
    header = desc['header']
    assert header['version'] == 1
    assert header['family'] == 'TCP4'
    assert header['result']['protocol'] == 'SOCK_STREAM'
    assert header['result']['source'] == {'address': '192.0.2.1',
                                          'port': 56324}
    assert desc['trailing_data']['length'] == 0


def test_v1_tcp6_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    status, desc = _json(capsys, b'PROXY TCP6 2001:db8::1 ::1 1 2\r\n')
    assert status == 0
    assert desc['header']['result']['source'] == {'address': '2001:db8::1',
                                                  'port': 1}
    status, out = _run(capsys, 'PROXY UNKNOWN whatever\\r\\n')
    assert status == 0
    assert "addresses    none given: use the connection's" in out


def test_v2_every_tlv_json(capsys: pytest.CaptureFixture[str]) -> None:
    header = build_header(_ipv4(FULL_TLV), crc32c=True)
    status, desc = _json(capsys, header + b'hello')
    assert status == 0
    info = desc['header']
    assert info['command'] == 'PROXY'
    assert (info['family'], info['protocol']) == ('INET', 'STREAM')
    assert info['address_block'] == {'offset': 16, 'length': 12}
    tlvs = {t['name']: t for t in info['tlvs']}
    assert [t['type'] for t in info['tlvs']] == [
        0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xE0, 0xEA, 0xEE, 0xF1, 0x99,
        0x03]
    assert info['tlvs'][0]['offset'] == 28
    assert tlvs['ALPN']['text'] == 'h2'
    assert tlvs['AUTHORITY']['text'] == 'example.com'
    assert tlvs['UNIQUE_ID']['hex'] == '010203ff'
    assert 'text' not in tlvs['UNIQUE_ID']
    assert tlvs['NETNS']['text'] == 'blue'
    assert tlvs['GCP']['value'] == 1234567890123
    assert tlvs['AWS']['value'] == 'vpce-0abc'
    assert tlvs['AZURE']['value'] == 4242
    assert tlvs['EXPERIMENT']['hex'] == 'cafe'
    assert tlvs['UNASSIGNED']['length'] == 0
    ssl_tlv = tlvs['SSL']
    assert ssl_tlv['client_flags'] == ['SSL', 'CERT_CONN', 'CERT_SESS']
    assert ssl_tlv['verified'] is True
    subs = {s['name']: s for s in ssl_tlv['sub_tlvs']}
    assert subs['SSL_VERSION']['text'] == 'TLSv1.3'
    assert subs['SSL_CN']['text'] == 'client.example'
    assert subs['SSL_CIPHER']['text'] == 'TLS_AES_128_GCM_SHA256'
    assert subs['SSL_SIG_ALG']['text'] == 'SHA256'
    assert subs['SSL_KEY_ALG']['text'] == 'RSA2048'
    assert subs['SSL_GROUP']['text'] == 'X25519'
    assert subs['SSL_SIG_SCHEME']['text'] == 'rsa_pss_rsae_sha256'
    assert subs['SSL_CLIENT_CERT']['certificate']['der_length'] == \
        len(CERT_DER)
    # Sub-TLV offsets are absolute: the first follows the 5-byte prefix.
    assert ssl_tlv['sub_tlvs'][0]['offset'] == ssl_tlv['offset'] + 3 + 5
    version = subs['SSL_VERSION']
    assert header[version['offset'] + 3:version['offset'] + 10] == \
        b'TLSv1.3'
    assert desc['header']['crc32c']['valid'] is True
    assert desc['trailing_data'] == {'length': 5, 'preview_hex': '68656c6c6f',
                                     'preview': "'hello'"}


def test_v2_every_tlv_text(capsys: pytest.CaptureFixture[str]) -> None:
    header = build_header(_ipv4(FULL_TLV), crc32c=True)
    status, out = _run(capsys, header.hex())
    assert status == 0
    for expected in ("0x01 ALPN (2 bytes): 'h2'",
                     "0x02 AUTHORITY (11 bytes): 'example.com'",
                     '0x05 UNIQUE_ID (4 bytes): 010203ff',
                     'client 0x07 (SSL|CERT_CONN|CERT_SESS), verify 0 '
                     '(verified)',
                     "0x22 SSL_CN (14 bytes): 'client.example'",
                     '0x28 SSL_CLIENT_CERT (49 bytes): DER certificate',
                     "0x30 NETNS (4 bytes): 'blue'",
                     '0xe0 GCP (8 bytes): PSC connection id 1234567890123',
                     '0xea AWS (10 bytes): VPCE_ID vpce-0abc',
                     '0xee AZURE (5 bytes): PRIVATEENDPOINT_LINKID 4242',
                     '0xf1 EXPERIMENT (2 bytes): cafe',
                     '0x99 UNASSIGNED (0 bytes): (empty)',
                     'CRC32C       valid',
                     'trailing data: none'):
        assert expected in out


@pytest.mark.parametrize('result, family, source', [
    (ProxyResultIPv6((IPv6Address('2001:db8::1'), 1),
                     (IPv6Address('::1'), 2), protocol=socket.SOCK_DGRAM),
     'INET6', {'address': '2001:db8::1', 'port': 1}),
    (ProxyResultUnix('/run/a.sock', '\x00abstract',
                     protocol=socket.SOCK_STREAM),
     'UNIX', {'path': '/run/a.sock'}),
    (ProxyResultUnknown(), 'UNSPEC', None),
])
def test_v2_families(capsys: pytest.CaptureFixture[str], result: Any,
                     family: str, source: Any) -> None:
    status, desc = _json(capsys, build_header(result))
    assert status == 0
    assert desc['header']['family'] == family
    assert desc['header']['result']['source'] == source


def test_v2_unix_abstract_and_warnings(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _run(capsys, build_header(
        ProxyResultUnix('/a', '\x00ns')).hex())
    assert status == 0
    assert "destination  '@ns'" in out
    status, out = _run(capsys, build_header(ProxyResultUnknown()).hex())
    assert 'warning: PROXY with the UNSPEC family' in out


def test_v2_local_with_address_block(
        capsys: pytest.CaptureFixture[str]) -> None:
    # LOCAL with an INET address block: receivers skip the block.
    header = V2_SIGNATURE + b'\x20\x11\x00\x0c' + bytes(12)
    status, out = _run(capsys, header.hex())
    assert status == 0
    assert 'command      LOCAL' in out
    assert "addresses    LOCAL: use the connection's" in out
    assert 'warning: a LOCAL header with 12 bytes' in out


def test_duplicate_tlv_warning(capsys: pytest.CaptureFixture[str]) -> None:
    tlv = ProxyProtocolTLV.from_entries([(0x05, b'a'), (0x05, b'b')])
    status, desc = _json(capsys, build_header(ProxyResultLocal(tlv=tlv)))
    assert status == 0
    assert desc['header']['warnings'] == [
        'a LOCAL header with 8 bytes after the fixed part: receivers use '
        "the real connection's addresses",
        'TLV type 0x05 appears more than once']


def test_ext_0_11_in_noop(capsys: pytest.CaptureFixture[str]) -> None:
    from proxyprotocol.tlv import ProxyProtocolExtTLV
    tlv = ProxyProtocolTLV(ext=ProxyProtocolExtTLV(dnsbl='listed',
                                                   secret_bits=256))
    status, desc = _json(capsys, build_header(_ipv4(tlv)))
    assert status == 0
    ext = desc['header']['tlvs'][0]['ext_0_11']
    assert (ext['dnsbl'], ext['secret_bits']) == ('listed', 256)


def test_long_header_warning(capsys: pytest.CaptureFixture[str]) -> None:
    tlv = ProxyProtocolTLV.from_entries([(0xF0, bytes(20000))])
    status, desc = _json(capsys, build_header(_ipv4(tlv)))
    assert status == 0
    assert any('more than the 16384' in w for w in desc['header']['warnings'])
    status, desc = _run_json_args(capsys, build_header(_ipv4(tlv)),
                                  '--max-length', '16384')
    assert status == 1
    assert desc['error']['kind'] == 'too_long'


def _run_json_args(capsys: pytest.CaptureFixture[str], data: bytes,
                   *argv: str) -> tuple[int, dict[str, Any]]:
    status, out = _run(capsys, '--json', *argv, '--hex', data.hex())
    return status, json.loads(out)


# --- invalid headers: field and offset -------------------------------------

def _v2(body: bytes, ver_cmd: int = 0x21, fam: int = 0x11,
        length: int | None = None) -> bytes:
    if length is None:
        length = len(body)
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + length.to_bytes(2, 'big') \
        + body


ADDRS = bytes(12)


@pytest.mark.parametrize('data, field, offset', [
    (b'GET / HTTP/1.1\r\n', 'signature', 0),
    (b'\r\n\r\n\x00\r\nQUIX\n', 'signature', 0),
    (b'\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00', 'v2.signature', 0),
    (_v2(ADDRS, ver_cmd=0x11), 'v2.version', 12),
    (_v2(ADDRS, ver_cmd=0x22), 'v2.command', 12),
    (_v2(ADDRS, fam=0x41), 'v2.family', 13),
    (_v2(ADDRS, fam=0x13), 'v2.protocol', 13),
    (_v2(bytes(4)), 'v2.length', 14),
    (_v2(ADDRS + b'\x02\x00\x09abc'), 'v2.tlv.authority', 28),
    (_v2(ADDRS + b'\x01\x00\x01a\x30'), 'v2.tlv', 32),
    (_v2(ADDRS + b'\x03\x00\x02ab'), 'v2.tlv.crc32c', 28),
    (_v2(ADDRS + b'\x20\x00\x03abc'), 'v2.tlv.ssl', 28),
    (_v2(ADDRS + b'\x20\x00\x09\x01\x00\x00\x00\x00\x21\x00\x09a'),
     'v2.tlv.ssl_version', 36),
    (_v2(ADDRS + b'\x30\x00\x02\xff\xfe'), 'v2.tlv.netns', 31),
    (b'PROXY TCP4 192.0.2.1 198.51.100.256 1 2\r\n', 'v1.dest', 21),
    (b'PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n', 'v1.source_port', 34),
    (b'PROXY TCP5 1', 'v1.family', 6),
    (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 'v1.crlf', 30),
    (b'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', 'v1.dest', 19),
    (b'PROXY UNKNOWN' + b'x' * 120, 'v1.crlf', 107),
])
def test_invalid(capsys: pytest.CaptureFixture[str], data: bytes, field: str,
                 offset: int) -> None:
    status, desc = _json(capsys, data)
    assert status == 1
    assert desc['valid'] is False
    assert desc['error']['field'] == field
    assert desc['error']['offset'] == offset
    status, out = _run(capsys, data.hex())
    assert status == 1
    assert out.startswith('invalid PROXY protocol header: ')
    assert f'  field   {field}\n' in out
    assert f'  offset  {offset} (0x{offset:x})\n' in out


def test_invalid_v1_points_at_the_field(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _run(capsys, 'PROXY TCP4 1.2.3.04 5.6.7.8 1 2\\r\\n')
    assert status == 1
    lines = out.splitlines()
    assert lines[3] == "  PROXY TCP4 1.2.3.04 5.6.7.8 1 2\\r\\n"
    assert lines[4] == '  ' + ' ' * 11 + '^'


def test_invalid_v2_hexdump(capsys: pytest.CaptureFixture[str]) -> None:
    data = _v2(ADDRS + b'\x01\x00\x01a\x30')
    status, out = _run(capsys, data.hex())
    assert status == 1
    lines = out.splitlines()
    assert lines[3] == '  0010  ' + data[16:32].hex(' ')
    assert lines[4] == '  0020  ' + data[32:].hex(' ')
    assert lines[5] == '  ' + ' ' * 6 + '^^'


def test_checksum_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    header = bytearray(build_header(_ipv4(ProxyProtocolTLV(
        authority='example.com')), crc32c=True))
    header[-1] ^= 0xFF
    status, desc = _json(capsys, bytes(header))
    assert status == 1
    assert desc['error']['kind'] == 'checksum'
    assert desc['error']['field'] == 'v2.tlv.crc32c'
    assert desc['error']['offset'] == len(header) - 7
    assert desc['complete'] is True
    # The header is still shown, with both values of the checksum.
    crc = desc['header']['crc32c']
    assert crc['valid'] is False
    assert crc['carried'] == '0x' + bytes(header[-4:]).hex()
    assert crc['carried'] != crc['computed']
    status, out = _run(capsys, bytes(header).hex())
    assert 'CRC32C       MISMATCH' in out


# --- incomplete headers ----------------------------------------------------

def test_incomplete(capsys: pytest.CaptureFixture[str]) -> None:
    status, desc = _json(capsys, V1_LINE[:20])
    assert status == 1
    assert desc['need'] == {'line': True}
    assert desc['error'] is None
    status, desc = _json(capsys, _v2(ADDRS)[:20])
    assert desc['need'] == {'bytes': 8}
    status, out = _run(capsys, _v2(ADDRS)[:10].hex())
    assert status == 1
    assert out == ('incomplete PROXY protocol header: 10 bytes so far, '
                   'needs 6 more bytes\n')


# --- versions --------------------------------------------------------------

def test_versions_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, _ = _run(capsys, '--versions', '2', V1_LINE.hex())
    assert status == 1
    status, _ = _run(capsys, '--versions', '1', V1_LINE.hex())
    assert status == 0


# --- input ------------------------------------------------------------------

def test_hex_forms() -> None:
    assert parse_hex('0d 0a:0D-0a') == b'\r\n\r\n'
    assert parse_hex('0x0d 0x0a \\x00') == b'\r\n\x00'
    assert looks_like_hex('0d0a\n0d0a\n')
    assert not looks_like_hex('0d0')
    assert not looks_like_hex('PROXY')
    assert not looks_like_hex('')
    with pytest.raises(ValueError):
        parse_hex('zz')
    assert unescape('a\\r\\n\\x00\\\\\\t\\0é') == b'a\r\n\x00\\\t\x00\xc3\xa9'


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize('data', [
    V1_LINE,
    V1_LINE.hex().encode() + b'\n',
    V1_LINE.hex(' ', 4).encode(),
])
def test_stdin_auto(capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    _stdin(monkeypatch, data)
    status, out = _run(capsys)
    assert status == 0
    assert 'PROXY protocol v1 header, 45 bytes' in out


def test_stdin_raw_v2(capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    header = build_header(_ipv4())
    _stdin(monkeypatch, header + b'\x00\x01')
    status, out = _run(capsys, '--file', '-')
    assert status == 0
    assert 'PROXY protocol v2 header, 28 bytes' in out
    assert "trailing data: 2 bytes after the header: '\\x00\\x01'" in out


def test_input_format_flags(capsys: pytest.CaptureFixture[str],
                            tmp_path: Path) -> None:
    path = tmp_path / 'h'
    # Bytes that happen to be hex digits: raw on request, hex by default.
    path.write_bytes(b'abcd')
    status, out = _run(capsys, '--input-format', 'raw', '-f', str(path))
    assert status == 1
    assert 'starts with neither' in out
    status, out = _run(capsys, '-f', str(path))
    assert '2 bytes' not in out and status == 1
    path.write_bytes(V1_LINE.hex().encode())
    status, out = _run(capsys, '--input-format', 'hex', '-f', str(path))
    assert status == 0
    path.write_bytes(build_header(_ipv4()))
    status, out = _run(capsys, '-f', str(path))
    assert status == 0


def test_input_errors(capsys: pytest.CaptureFixture[str],
                      tmp_path: Path) -> None:
    assert main(['decode', '--hex', 'zz']) == 2
    assert 'not hex' in capsys.readouterr().err
    assert main(['decode', '-f', str(tmp_path / 'missing')]) == 2
    assert 'No such file' in capsys.readouterr().err


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert 'decode' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(['decode', 'a', '--hex', 'b'])
    assert exc.value.code == 2


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, '-m', 'proxyprotocol.cli', 'decode', '--json'],
        input=V1_LINE, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)['header']['family'] == 'TCP4'
    proc = subprocess.run(
        [sys.executable, '-m', 'proxyprotocol.cli', 'decode'],
        input=b'garbage', capture_output=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert b'field   signature' in proc.stdout


# --- names and addresses ---------------------------------------------------

def test_tlv_names() -> None:
    assert tlv_name(0x05) == 'UNIQUE_ID'
    assert tlv_name(0x22, ssl_sub=True) == 'SSL_CN'
    assert tlv_name(0xE1) == 'CUSTOM'
    assert tlv_name(0xF8) == 'FUTURE'
    assert tlv_name(0x06) == 'UNASSIGNED'


def test_endpoints() -> None:
    assert parse_endpoint('localhost:80') == Endpoint('localhost', 80)
    assert parse_endpoint('[::1]:80') == Endpoint('::1', 80)
    assert parse_endpoint('unix:/run/x') == Endpoint(path='/run/x')
    assert parse_endpoint('unix:@x') == Endpoint(path='\x00x')
    assert parse_endpoint('./x.sock') == Endpoint(path='./x.sock')
    assert parse_endpoint('8080', default_host='127.0.0.1') == \
        Endpoint('127.0.0.1', 8080)
    assert parse_endpoint(':0', default_host='127.0.0.1') == \
        Endpoint('127.0.0.1', 0)
    assert str(Endpoint('::1', 80)) == '[::1]:80'
    assert str(Endpoint(path='\x00x')) == 'unix:@x'
    for bad in ('::1:80', 'host', 'host:99999', '[::1]80', 'unix:', ':80',
                'host:x'):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    assert parse_header_address('192.0.2.1:5') == ('192.0.2.1', 5)
    assert parse_header_address('[2001:db8::1]:5') == ('2001:db8::1', 5)
    assert parse_header_address('@abs', unix=True) == '\x00abs'
    for bad in ('example.com:80', '[192.0.2.1]:5', '2001:db8::1:5',
                '192.0.2.1'):
        with pytest.raises(ValueError):
            parse_header_address(bad)


# --- send --dry-run: crafted headers, decoded back ---------------------------

def _dry_run(capsys: pytest.CaptureFixture[str], *argv: str
             ) -> tuple[int, bytes, str]:
    status = main(['send', '--dry-run', *argv])
    out, err = capsys.readouterr()
    return status, bytes.fromhex(out.strip()) if status == 0 else b'', err


def test_dry_run_every_option(capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    import ssl
    pem = ssl.DER_cert_to_PEM_cert(CERT_DER)
    (tmp_path / 'c.pem').write_text('junk\n' + pem)
    status, header, err = _dry_run(
        capsys, '-s', '192.0.2.1:56324', '-d', '198.51.100.2:443',
        '--alpn', 'h2', '--authority', 'example.com',
        '--unique-id', 'hex:010203ff', '--netns', 'blue', '--noop', '2',
        '--aws-vpce-id', 'vpce-0abc', '--azure-link-id', '4242',
        '--gcp-psc-id', '1234567890123', '--tlv', '0xF1=cafe',
        '--tlv', '153=', '--ssl-version', 'TLSv1.3',
        '--ssl-cn', 'client.example', '--ssl-cipher', 'TLS_AES_128_GCM_SHA256',
        '--ssl-sig-alg', 'SHA256', '--ssl-key-alg', 'RSA2048',
        '--ssl-group', 'X25519', '--ssl-sig-scheme', 'rsa_pss_rsae_sha256',
        '--ssl-client-cert', str(tmp_path / 'c.pem'), '--crc32c')
    assert status == 0, err
    assert header == build_header(_ipv4(FULL_TLV), crc32c=True)


def test_dry_run_families(capsys: pytest.CaptureFixture[str]) -> None:
    status, header, _ = _dry_run(capsys, '-s', '[2001:db8::1]:1',
                                 '-d', '[::1]:2', '--protocol', 'dgram')
    assert header == build_header(ProxyResultIPv6(
        (IPv6Address('2001:db8::1'), 1), (IPv6Address('::1'), 2),
        protocol=socket.SOCK_DGRAM))
    status, header, _ = _dry_run(capsys, '--family', 'unix', '-s', '/a',
                                 '-d', '@b', '--protocol', 'unspec')
    assert header == build_header(ProxyResultUnix('/a', '\x00b'))
    status, header, _ = _dry_run(capsys, '--family', 'unspec')
    assert header == build_header(ProxyResultUnknown())
    status, header, _ = _dry_run(capsys, '--command', 'local',
                                 '--unique-id', 'x')
    assert header == build_header(ProxyResultLocal(
        tlv=ProxyProtocolTLV(unique_id=b'x')))
    status, header, _ = _dry_run(capsys, '-1', '-s', '192.0.2.1:56324',
                                 '-d', '198.51.100.2:443')
    assert header == V1_LINE
    status, header, _ = _dry_run(capsys, '-1', '--family', 'unspec')
    assert header == b'PROXY UNKNOWN\r\n'
    status, header, _ = _dry_run(capsys, '--raw-header', '0d0a')
    assert header == b'\r\n'


@pytest.mark.parametrize('argv, message', [
    (['-1', '--family', 'unspec', '--alpn', 'h2'], 'v1 cannot carry TLVs'),
    (['-1', '--command', 'local'], 'v1 cannot send LOCAL'),
    (['-1', '--family', 'unix', '-s', '/a', '-d', '/b'], 'UNIX'),
    (['-1', '-s', '192.0.2.1:1', '-d', '192.0.2.2:2', '--protocol', 'dgram'],
     'TCP only'),
    (['-s', '192.0.2.1:1'], 'both --source and --destination'),
    ([], 'give --source and --destination'),
    (['-s', 'example.com:1', '-d', '192.0.2.2:2'], 'not an IP address'),
    (['--family', 'inet', '-s', '[::1]:1', '-d', '[::1]:2'],
     'needs IPv4 addresses'),
    (['--family', 'inet6', '-s', '192.0.2.1:1', '-d', '192.0.2.2:2'],
     'needs IPv6 addresses'),
    (['--family', 'unspec', '--unique-id', 'x' * 129],
     'more than 128'),
    (['--family', 'unspec', '--authority', 'a' * 256], 'more than 255'),
    (['--family', 'unspec', '--netns', 'é'], 'ASCII'),
    (['--family', 'unspec', '--azure-link-id', str(2 ** 32)],
     'does not fit'),
    (['--family', 'unspec', '--ssl-client-cert', '/nonexistent/c.pem'],
     'No such file'),
    (['--family', 'unspec', '--tlv', '0xF0=' + '00' * 65536],
     'more than 65535'),
])
def test_dry_run_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                        message: str) -> None:
    status, _, err = _dry_run(capsys, *argv)
    assert status == 2
    assert message in err


@pytest.mark.parametrize('value, message', [
    ('F0', 'expected TYPE=HEX'),
    ('0x100=00', 'from 0 to 255'),
    ('x=00', 'from 0 to 255'),
    ('1=zz', 'not hex'),
])
def test_dry_run_bad_tlv_option(capsys: pytest.CaptureFixture[str],
                                value: str, message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(['send', '--dry-run', '--family', 'unspec', '--tlv', value])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
