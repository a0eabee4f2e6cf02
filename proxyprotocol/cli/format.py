"""Describe a received header for a person or a program.

:func:`describe` turns the bytes of a header (and whatever followed it) into
a plain JSON-able dictionary: every fixed field, every TLV and SSL sub-TLV
with its byte offset, the cloud providers' TLVs decoded, the CRC32C checked,
and for an invalid header the error with the field and offset at fault.
:func:`render` writes the same dictionary as text for a terminal. Both
outputs come from one description, so ``--json`` never says something the
text does not.

"""

from __future__ import annotations

import hashlib
import ssl
import string
from typing import Any, Final, Optional, Union

from ..checksum import crc32c
from ..errors import (NeedMore, ProxyProtocolChecksumError,
                      ProxyProtocolError, ProxyProtocolTooLongError)
from ..header import DEFAULT_MAX_LENGTH, ParsedHeader
from ..result import (ProxyResult, ProxyResultIPv4, ProxyResultIPv6,
                      ProxyResultUnix)
from ..tlv import ProxyProtocolExtTLV
from ..v2 import V2_SIGNATURE

__all__ = ['Description', 'describe', 'describe_result', 'describe_tlvs',
           'render', 'render_lines', 'tlv_name', 'format_address']

#: A JSON-able description of a header, as :func:`describe` returns it.
Description = dict[str, Any]

_TLV_NAMES: Final = {
    0x01: 'ALPN', 0x02: 'AUTHORITY', 0x03: 'CRC32C', 0x04: 'NOOP',
    0x05: 'UNIQUE_ID', 0x20: 'SSL', 0x30: 'NETNS', 0xE0: 'GCP',
    0xEA: 'AWS', 0xEE: 'AZURE',
}
_SSL_NAMES: Final = {
    0x21: 'SSL_VERSION', 0x22: 'SSL_CN', 0x23: 'SSL_CIPHER',
    0x24: 'SSL_SIG_ALG', 0x25: 'SSL_KEY_ALG', 0x26: 'SSL_GROUP',
    0x27: 'SSL_SIG_SCHEME', 0x28: 'SSL_CLIENT_CERT',
}
_CLIENT_FLAGS: Final = ((0x01, 'SSL'), (0x02, 'CERT_CONN'),
                        (0x04, 'CERT_SESS'))
_COMMANDS: Final = ('LOCAL', 'PROXY')
_FAMILIES: Final = ('UNSPEC', 'INET', 'INET6', 'UNIX')
_PROTOCOLS: Final = ('UNSPEC', 'STREAM', 'DGRAM')
_ADDRESS_SIZES: Final = (0, 12, 36, 216)
_PRINTABLE: Final = frozenset(string.printable) - frozenset('\t\n\r\x0b\x0c')

#: How many bytes of trailing data are shown.
PREVIEW_LENGTH: Final = 32


def tlv_name(tlv_type: int, *, ssl_sub: bool = False) -> str:
    """The name of a TLV type (or SSL sub-type), or the range it falls in."""
    name = (_SSL_NAMES if ssl_sub else _TLV_NAMES).get(tlv_type)
    if name is not None:
        return name
    if 0xE0 <= tlv_type <= 0xEF:
        return 'CUSTOM'
    if 0xF0 <= tlv_type <= 0xF7:
        return 'EXPERIMENT'
    if 0xF8 <= tlv_type:
        return 'FUTURE'
    return 'UNASSIGNED'


def _text(value: bytes) -> Optional[str]:
    # The value as text when it is printable UTF-8, else None.
    try:
        text = value.decode('utf-8')
    except UnicodeDecodeError:
        return None
    if all(c in _PRINTABLE or (ord(c) > 0x7F and c.isprintable())
           for c in text):
        return text
    return None


def _quoted(value: bytes) -> str:
    # Bytes as a person reads them: text if printable, else escaped.
    return repr(value)[1:] if _text(value) is None else repr(_text(value))


def _ssl_value(value: bytes, offset: int) -> dict[str, Any]:
    if len(value) < 5:
        return {}
    client = value[0]
    verify = int.from_bytes(value[1:5], 'big')
    subs: list[dict[str, Any]] = []
    pos = 5
    while len(value) - pos >= 3:
        sub_type = value[pos]
        length = int.from_bytes(value[pos + 1:pos + 3], 'big')
        sub_value = value[pos + 3:pos + 3 + length]
        entry = _entry(sub_type, sub_value, offset + pos, ssl_sub=True)
        subs.append(entry)
        pos += 3 + length
    return {
        'client': client,
        'client_flags': [name for bit, name in _CLIENT_FLAGS if client & bit],
        'verify': verify,
        'verified': verify == 0,
        'sub_tlvs': subs,
    }


def _certificate(der: bytes) -> dict[str, Any]:
    return {
        'der_length': len(der),
        'sha256': hashlib.sha256(der).hexdigest(),
        'pem': ssl.DER_cert_to_PEM_cert(der),
    }


def _value(tlv_type: int, value: bytes, offset: int,
           ssl_sub: bool) -> dict[str, Any]:
    # Decodes what a known type's value means.
    if ssl_sub:
        if tlv_type == 0x28:
            return {'certificate': _certificate(value)}
        text = _text(value)
        return {'text': text} if text is not None else {}
    if tlv_type == 0x03 and len(value) == 4:
        return {'value': f'0x{int.from_bytes(value, "big"):08x}'}
    if tlv_type == 0x04:
        ext = ProxyProtocolExtTLV(value)
        if ext:
            return {'ext_0_11': {
                'compression': ext.compression,
                'secret_bits': ext.secret_bits,
                'dnsbl': ext.dnsbl,
                'peercert': ext.peercert,
            }}
        return {}
    if tlv_type == 0x20:
        return _ssl_value(value, offset + 3)
    if tlv_type == 0xEA and value[:1] == b'\x01':
        return {'subtype': 1, 'subtype_name': 'VPCE_ID',
                'value': value[1:].decode('ascii', 'backslashreplace')}
    if tlv_type == 0xEE and value[:1] == b'\x01' and len(value) == 5:
        return {'subtype': 1, 'subtype_name': 'PRIVATEENDPOINT_LINKID',
                'value': int.from_bytes(value[1:], 'little')}
    if tlv_type == 0xE0 and len(value) == 8:
        return {'value': int.from_bytes(value, 'big'),
                'value_name': 'PSC_CONNECTION_ID'}
    if tlv_type in (0x01, 0x02, 0x05, 0x30):
        text = _text(value)
        return {'text': text} if text is not None else {}
    return {}


def _entry(tlv_type: int, value: bytes, offset: int, *,
           ssl_sub: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        'offset': offset,
        'type': tlv_type,
        'type_hex': f'0x{tlv_type:02x}',
        'name': tlv_name(tlv_type, ssl_sub=ssl_sub),
        'length': len(value),
        'hex': value.hex(),
    }
    entry.update(_value(tlv_type, value, offset, ssl_sub))
    return entry


def describe_tlvs(entries: Any, start: int) -> list[dict[str, Any]]:
    """Describe TLV ``entries`` (``(type, value)`` pairs in wire order) that
    start at byte ``start`` of the header."""
    described = []
    pos = start
    for tlv_type, value in entries:
        described.append(_entry(tlv_type, bytes(value), pos))
        pos += 3 + len(value)
    return described


def format_address(address: Any) -> Optional[str]:
    """An address as text: ``1.2.3.4:5``, ``[::1]:5`` or a UNIX path
    (``@name`` for Linux's abstract namespace)."""
    if address is None:
        return None
    if isinstance(address, str):
        return '@' + address[1:] if address.startswith('\x00') else address
    host, port = address[0], address[1]
    host = str(host)
    if ':' in host:
        return f'[{host}]:{port}'
    return f'{host}:{port}'


def _address_json(address: Any) -> Optional[dict[str, Any]]:
    if address is None:
        return None
    if isinstance(address, str):
        return {'path': address.replace('\x00', '@', 1)
                if address.startswith('\x00') else address}
    return {'address': str(address[0]), 'port': address[1]}


def describe_result(result: ProxyResult) -> dict[str, Any]:
    """What a result says, without the TLVs."""
    protocol = result.protocol
    described: dict[str, Any] = {
        'class': type(result).__name__,
        'type': result.type.name,
        'proxied': result.proxied,
        'protocol': protocol.name if protocol is not None else None,
    }
    if isinstance(result, (ProxyResultIPv4, ProxyResultIPv6)):
        described['source'] = _address_json(result.source)
        described['destination'] = _address_json(result.dest)
    elif isinstance(result, ProxyResultUnix):
        described['source'] = _address_json(result.source)
        described['destination'] = _address_json(result.dest)
    else:
        described['source'] = described['destination'] = None
    return described


def _trailing(data: bytes) -> dict[str, Any]:
    preview = data[:PREVIEW_LENGTH]
    return {'length': len(data), 'preview_hex': preview.hex(),
            'preview': _quoted(preview) if preview else ''}


def _crc_check(header: bytes, tlvs: list[dict[str, Any]]) -> Optional[
        dict[str, Any]]:
    # Recomputes the CRC32C over the bytes received (spec section 2.2.3).
    for entry in tlvs:
        if entry['type'] == 0x03 and entry['length'] == 4:
            at = entry['offset'] + 3
            computed = crc32c(header[:at] + bytes(4) + header[at + 4:])
            carried = int.from_bytes(header[at:at + 4], 'big')
            return {'carried': f'0x{carried:08x}',
                    'computed': f'0x{computed:08x}',
                    'valid': carried == computed}
    return None


def _describe_v2(header: bytes, result: Optional[ProxyResult]
                 ) -> dict[str, Any]:
    ver_cmd, fam = header[12], header[13]
    length = int.from_bytes(header[14:16], 'big')
    family = fam >> 4
    address_size = _ADDRESS_SIZES[family] if family < 4 else 0
    if length < address_size:
        address_size = 0
    described: dict[str, Any] = {
        'version': 2,
        'length': len(header),
        'signature': header[:12].hex(),
        'command': _COMMANDS[ver_cmd & 0xF] if ver_cmd & 0xF < 2 else None,
        'family': _FAMILIES[family] if family < 4 else None,
        'protocol': _PROTOCOLS[fam & 0xF] if fam & 0xF < 3 else None,
        'length_field': length,
        'address_block': {'offset': 16, 'length': address_size},
    }
    if result is not None:
        described['result'] = describe_result(result)
        tlvs = describe_tlvs(result.tlv.entries, 16 + address_size)
        described['tlvs'] = tlvs
        described['crc32c'] = _crc_check(header, tlvs)
    warnings = []
    if ver_cmd & 0xF == 0 and length:
        warnings.append(
            f'a LOCAL header with {length} bytes after the fixed part: '
            'receivers use the real connection\'s addresses')
    if ver_cmd & 0xF == 1 and family == 0:
        warnings.append('PROXY with the UNSPEC family: receivers use the '
                        'real connection\'s addresses')
    if len(header) > DEFAULT_MAX_LENGTH:
        warnings.append(
            f'{len(header)} bytes is more than the {DEFAULT_MAX_LENGTH} '
            'that proxyprotocol accepts by default (max_length)')
    if result is not None:
        seen: set[int] = set()
        for tlv_type, _ in result.tlv.entries:
            if tlv_type in seen:
                warnings.append(f'TLV type 0x{tlv_type:02x} appears more '
                                'than once')
            seen.add(tlv_type)
    described['warnings'] = warnings
    return described


def _describe_v1(header: bytes, result: ProxyResult) -> dict[str, Any]:
    line = header.decode('ascii', 'backslashreplace')
    fields = line.rstrip('\r\n').split(' ')
    return {
        'version': 1,
        'length': len(header),
        'line': line,
        'family': fields[1] if len(fields) > 1 else None,
        'result': describe_result(result),
        'tlvs': [],
        'crc32c': None,
        'warnings': [],
    }


def _error(exc: ProxyProtocolError) -> dict[str, Any]:
    if isinstance(exc, ProxyProtocolChecksumError):
        kind = 'checksum'
    elif isinstance(exc, ProxyProtocolTooLongError):
        kind = 'too_long'
    else:
        kind = 'syntax'
    message = exc.args[0] if exc.args else str(exc)
    return {'kind': kind, 'class': type(exc).__name__, 'message': message,
            'field': exc.field, 'offset': exc.offset}


def describe(data: bytes,
             outcome: Union[ParsedHeader, NeedMore, ProxyProtocolError]
             ) -> Description:
    """Describe ``data`` (starting with a header) as parsed into ``outcome``.

    ``outcome`` is what :func:`~proxyprotocol.header.parse_header` returned
    or raised for ``data``. The description has ``valid``, ``complete``,
    ``header`` (the fields, or None), ``error`` (or None), ``need`` (what
    an incomplete header lacks, or None) and ``trailing_data`` (or None).

    """
    described: Description = {
        'valid': False, 'complete': False, 'input_length': len(data),
        'header': None, 'error': None, 'need': None, 'trailing_data': None,
    }
    if isinstance(outcome, ParsedHeader):
        header = data[:outcome.length]
        if outcome.version == 2:
            described['header'] = _describe_v2(header, outcome.result)
        else:
            described['header'] = _describe_v1(header, outcome.result)
        described['valid'] = described['complete'] = True
        described['trailing_data'] = _trailing(data[outcome.length:])
    elif isinstance(outcome, NeedMore):
        described['need'] = (
            {'line': True} if outcome.want_line
            else {'bytes': outcome.want_bytes})
        if data.startswith(V2_SIGNATURE) and len(data) >= 16:
            described['header'] = _describe_v2(data[:16], None)
    else:
        described['error'] = _error(outcome)
        if isinstance(outcome, ProxyProtocolChecksumError) \
                and len(data) >= 16:
            length = 16 + int.from_bytes(data[14:16], 'big')
            described['header'] = _describe_v2(data[:length], outcome.result)
            described['complete'] = True
            described['trailing_data'] = _trailing(data[length:])
        elif data.startswith(V2_SIGNATURE) and len(data) >= 16 and \
                isinstance(outcome, ProxyProtocolTooLongError):
            described['header'] = _describe_v2(data[:16], None)
    return described


# --- text ------------------------------------------------------------------

def _hexdump_rows(data: bytes, offset: int) -> list[str]:
    # The 16-byte row holding ``offset`` (and the one before), with a caret.
    row = offset // 16 * 16
    rows = []
    for start in (row - 16, row):
        if start < 0 or start >= max(len(data), 1):
            continue
        chunk = data[start:start + 16]
        rows.append(f'{start:04x}  {chunk.hex(" ")}')
    if offset <= len(data):
        column = 6 + (offset - row) * 3
        rows.append(' ' * column + '^^')
    return rows


def _v1_context(data: bytes, offset: int) -> list[str]:
    line_end = data.find(b'\n')
    line = data[:line_end + 1 if line_end >= 0 else 108]
    text = repr(line)[2:-1]
    # Map the byte offset to the column of its escaped form.
    column = len(repr(line[:offset])[2:-1])
    return [text, ' ' * column + '^']


def _ssl_lines(entry: dict[str, Any], indent: str) -> list[str]:
    lines = []
    flags = '|'.join(entry.get('client_flags', [])) or 'none'
    if 'client' in entry:
        if not entry['verified']:
            state = 'not verified'
        elif entry['client'] & 0x06:
            state = 'verified'
        else:
            state = 'no error; no client certificate'
        lines.append(f'{indent}client 0x{entry["client"]:02x} ({flags}), '
                     f'verify {entry["verify"]} ({state})')
    for sub_entry in entry.get('sub_tlvs', []):
        lines.extend(_tlv_lines(sub_entry, indent, sub=True))
    return lines


def _tlv_lines(entry: dict[str, Any], indent: str, *,
               sub: bool = False) -> list[str]:
    head = (f'{indent}@{entry["offset"]:<4} {entry["type_hex"]} '
            f'{entry["name"]} ({entry["length"]} bytes)')
    value = bytes.fromhex(entry['hex'])
    lines = []
    if 'certificate' in entry:
        cert = entry['certificate']
        lines.append(f'{head}: DER certificate, SHA-256 {cert["sha256"]}')
    elif 'subtype' in entry:
        lines.append(f'{head}: {entry["subtype_name"]} {entry["value"]}')
    elif entry['name'] == 'GCP' and 'value' in entry:
        lines.append(f'{head}: PSC connection id {entry["value"]}')
    elif 'text' in entry:
        lines.append(f'{head}: {entry["text"]!r}')
    elif 'value' in entry:
        lines.append(f'{head}: {entry["value"]}')
    elif 'ext_0_11' in entry:
        ext = {k: v for k, v in entry['ext_0_11'].items() if v is not None}
        lines.append(f'{head}: proxy-protocol 0.11 extension {ext}')
    elif entry['type'] == 0x20 and not sub:
        lines.append(f'{head}:')
    elif len(value) <= 48:
        lines.append(f'{head}: {value.hex() or "(empty)"}')
    else:
        lines.append(f'{head}: {value[:48].hex()}...')
    if entry['type'] == 0x20 and not sub:
        lines.extend(_ssl_lines(entry, indent + '      '))
    return lines


def _address_text(address: Optional[dict[str, Any]]) -> str:
    if address is None:
        return '(none)'
    if 'path' in address:
        return repr(address['path'])
    host = address['address']
    return f'[{host}]:{address["port"]}' if ':' in host \
        else f'{host}:{address["port"]}'


def _header_lines(header: dict[str, Any]) -> list[str]:
    lines = []
    if header['version'] == 1:
        lines.append(f'PROXY protocol v1 header, {header["length"]} bytes')
        lines.append(f'  line         {header["line"]!r}')
        lines.append(f'  family       {header["family"]}')
    else:
        complete = 'result' in header
        lines.append(f'PROXY protocol v2 header, {header["length"]} bytes'
                     + ('' if complete else ' so far'))
        lines.append(f'  command      {header["command"]}')
        lines.append(f'  family       {header["family"]}')
        lines.append(f'  protocol     {header["protocol"]}')
        block = header['address_block']['length']
        lines.append(f'  length       {header["length_field"]} (address '
                     f'block {block}, TLVs '
                     f'{max(header["length_field"] - block, 0)})')
    result = header.get('result')
    if result is not None:
        lines.append(f'  result       {result["class"]}'
                     + (f', {result["protocol"]}' if result['protocol']
                        else ''))
        if result['proxied'] and result['source'] is None:
            lines.append('  addresses    none given: use the connection\'s')
        elif result['proxied']:
            lines.append(f'  source       {_address_text(result["source"])}')
            lines.append('  destination  '
                         f'{_address_text(result["destination"])}')
        else:
            lines.append('  addresses    LOCAL: use the connection\'s')
    tlvs = header.get('tlvs') or []
    if tlvs:
        lines.append(f'  TLVs ({len(tlvs)}):')
        for entry in tlvs:
            lines.extend(_tlv_lines(entry, '    '))
    crc = header.get('crc32c')
    if crc is not None:
        state = 'valid' if crc['valid'] else 'MISMATCH'
        lines.append(f'  CRC32C       {state}: carried {crc["carried"]}, '
                     f'computed {crc["computed"]}')
    for warning in header.get('warnings') or []:
        lines.append(f'  warning: {warning}')
    return lines


def render_lines(described: Description, data: bytes = b'') -> list[str]:
    """:func:`describe`'s output as lines of text.

    ``data`` (the same bytes) lets an error show the bytes around it.

    """
    lines: list[str] = []
    error = described['error']
    header = described['header']
    if error is not None:
        lines.append(f'invalid PROXY protocol header: {error["message"]}')
        if error['field'] is not None:
            lines.append(f'  field   {error["field"]}')
        if error['offset'] is not None:
            offset = error['offset']
            lines.append(f'  offset  {offset} (0x{offset:x})')
            if data and error['kind'] != 'checksum':
                context = _v1_context(data, offset) if data[:1] == b'P' \
                    else _hexdump_rows(data, offset)
                lines.extend('  ' + row for row in context)
    elif described['need'] is not None:
        need = described['need']
        missing = ('the rest of the line (through CRLF)' if 'line' in need
                   else f'{need["bytes"]} more bytes')
        lines.append(f'incomplete PROXY protocol header: '
                     f'{described["input_length"]} bytes so far, needs '
                     f'{missing}')
    if header is not None:
        lines.extend(_header_lines(header))
    trailing = described['trailing_data']
    if trailing is not None:
        if trailing['length']:
            more = '...' if trailing['length'] > PREVIEW_LENGTH else ''
            lines.append(f'trailing data: {trailing["length"]} bytes after '
                         f'the header: {trailing["preview"]}{more}')
        else:
            lines.append('trailing data: none')
    return lines


def render(described: Description, data: bytes = b'') -> str:
    """:func:`describe`'s output as text, with a final newline."""
    return '\n'.join(render_lines(described, data)) + '\n'
