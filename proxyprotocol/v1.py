"""Version 1 of the PROXY protocol: one line of text (spec section 2.1).

``PROXY`` SP family SP source SP destination SP source-port SP dest-port CRLF,
at most 107 bytes, where the family is ``TCP4``, ``TCP6`` or ``UNKNOWN`` (after
which anything may follow up to the CRLF).

:func:`unpack_v1` is the strict, incremental reader; :func:`pack_v1` the
writer. :class:`ProxyProtocolV1` keeps both upstream generations' methods.

"""

from __future__ import annotations

import re
import socket
from socket import SOCK_STREAM
from typing import TYPE_CHECKING, Final, NoReturn, Union

from .base import ProxyProtocol
from .errors import (NeedMore, ProxyProtocolBuildError,
                     ProxyProtocolSyntaxError, ProxyProtocolTooLongError)
from .result import (ProxyResult, ProxyResultIPv4, ProxyResultIPv6,
                     ProxyResultType, ProxyResultUnknown)
from .result import _new_wire_result
from .tlv import EMPTY_TLV

if TYPE_CHECKING:
    from .typing import Buffer

__all__ = ['ProxyProtocolV1', 'unpack_v1', 'pack_v1', 'MAX_V1_LENGTH',
           'V1_SIGNATURE']

#: The longest valid v1 line, CRLF included (spec section 2.1).
MAX_V1_LENGTH: Final = 107

#: How every v1 header starts.
V1_SIGNATURE: Final = b'PROXY '

# The patterns are written for the speed of the re engine: no repeated
# groups, no captures that are not needed, alternatives that fail on their
# first character. An octet is 0-255 in decimal without leading zeros, the
# same as (?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]).
_OCTET = rb'(?:1[0-9]{0,2}|2(?:[0-4][0-9]?|5[0-5]?|[6-9])?|[3-9][0-9]?|0)'
_IPV4 = _OCTET + rb'\.' + _OCTET + rb'\.' + _OCTET + rb'\.' + _OCTET
# A port is 0-65535 in plain decimal, without leading zeros.
_PORT = (rb'(?:[1-5][0-9]{4}|6(?:[0-4][0-9]{3}|5(?:[0-4][0-9]{2}'
         rb'|5(?:[0-2][0-9]|3[0-5])))|[1-9][0-9]{0,3}|0)')
_PORTS = _PORT + b' ' + _PORT + rb'\r\n'
_TCP4: Final = re.compile(
    rb'PROXY TCP4 ' + _IPV4 + b' ' + _IPV4 + b' ' + _PORTS)
# The addresses are then checked with inet_pton.
_TCP6: Final = re.compile(
    rb'PROXY TCP6 ([0-9A-Fa-f:.]{2,45}) ([0-9A-Fa-f:.]{2,45}) ' + _PORTS)
_IPV4_FULL: Final = re.compile(_IPV4)
_FIELDS: Final = ('v1.signature', 'v1.family', 'v1.source', 'v1.dest',
                  'v1.source_port', 'v1.dest_port')
_FAMILIES: Final = (b'TCP4', b'TCP6', b'UNKNOWN')
_inet_pton = socket.inet_pton
_AF_INET6 = socket.AF_INET6
_new = object.__new__


def _fail(message: str, field: str, offset: int) -> NoReturn:
    raise ProxyProtocolSyntaxError(message, field=field, offset=offset)


def _check_field(index: int, value: bytes, family: bytes, offset: int,
                 complete: bool) -> None:
    # Checks one space-separated field; an incomplete field need only be
    # the start of a valid one.
    field = _FIELDS[index]
    if index == 0:
        if value != b'PROXY' if complete else not b'PROXY'.startswith(value):
            _fail('not a PROXY protocol v1 header', field, offset)
    elif index == 1:
        if value not in _FAMILIES if complete \
                else not any(f.startswith(value) for f in _FAMILIES):
            _fail(f'unsupported family {value[:8]!r}, expected TCP4, TCP6 '
                  'or UNKNOWN', field, offset)
    elif index in (2, 3):
        if family == b'TCP4':
            _check_ipv4(value, field, offset, complete)
        else:
            _check_ipv6(value, field, offset, complete)
    else:
        _check_port(value, field, offset, complete)


def _check_ipv4(value: bytes, field: str, offset: int, complete: bool) -> None:
    if complete:
        if _IPV4_FULL.fullmatch(value) is None:
            _fail(f'invalid IPv4 address {value!r}: four decimal octets '
                  '0-255 without leading zeros', field, offset)
        return
    octets = value.split(b'.')
    if len(octets) > 4 or len(value) > 15:
        _fail(f'invalid IPv4 address {value!r}', field, offset)
    for i, octet in enumerate(octets):
        last = i == len(octets) - 1
        if (not octet and not last) or not (octet.isdigit() or not octet) \
                or len(octet) > 3 or (len(octet) > 1 and octet[:1] == b'0') \
                or (octet and int(octet) > 255):
            _fail(f'invalid IPv4 address {value!r}: four decimal octets '
                  '0-255 without leading zeros', field, offset)


def _check_ipv6(value: bytes, field: str, offset: int, complete: bool) -> None:
    if len(value) > 45 or value.strip(b'0123456789abcdefABCDEF:.'):
        _fail(f'invalid IPv6 address {value[:46]!r}: hexadecimal groups and '
              'colons only, no zone id', field, offset)
    text = value.decode('ascii')
    for suffix in ('',) if complete else _IPV6_COMPLETIONS:
        try:
            _inet_pton(socket.AF_INET6, text + suffix)
        except (OSError, ValueError):
            continue
        return
    _fail(f'invalid IPv6 address {value!r}', field, offset)


# An incomplete address is rejected unless one of these endings makes it
# valid: enough to cover a group, a "::", or the dotted IPv4 tail.
_IPV6_COMPLETIONS: Final = ('', '0', ':0', '::', '::0', '0::', ':0::', '.0',
                            '.0.0', '.0.0.0', '0.0', '0.0.0')


def _check_port(value: bytes, field: str, offset: int, complete: bool) -> None:
    if (complete and not value) or (value and not value.isdigit()) \
            or len(value) > 5 or (len(value) > 1 and value[:1] == b'0') \
            or (value and int(value) > 65535):
        _fail(f'invalid port {value[:8]!r}: decimal 0-65535 without sign or '
              'leading zeros', field, offset)


def _check_fields(body: bytes, complete: bool) -> None:
    # Checks the fields of a line without its CRLF. When the line is not
    # complete yet, its last field need only be the start of a valid one.
    fields = body.split(b' ')
    family = fields[1] if len(fields) > 1 else b''
    offset = 0
    last_index = len(fields) - 1
    for index, value in enumerate(fields):
        if index >= 6:
            _fail('too many fields', 'v1', offset)
        whole = complete or index < last_index
        if not value and whole:
            _fail('fields must be separated by exactly one space',
                  _FIELDS[index], offset)
        _check_field(index, value, family, offset, whole)
        offset += len(value) + 1
    if complete and len(fields) < 6:
        _fail(f'expected 6 fields, found {len(fields)}',
              _FIELDS[len(fields)], len(body))


def _is_unknown(data: bytes) -> bool:
    # "UNKNOWN" and then anything up to the CRLF (spec section 2.1).
    return data.startswith(b'PROXY UNKNOWN') and (
        len(data) == 13 or data[13] in (0x20, 0x0D))


_NEED_LINE: Final = NeedMore(want_line=True)


def unpack_v1(data: Buffer) -> Union[tuple[ProxyResult, int], NeedMore]:
    """Read a v1 header from the start of ``data``.

    Returns the result and the length of the header line, or
    ``NeedMore(want_line=True)`` while the line is incomplete but could still
    become valid. Raises :class:`~proxyprotocol.errors.ProxyProtocolSyntaxError`
    as soon as it cannot.

    """
    if type(data) is not bytes:
        data = bytes(data[:MAX_V1_LENGTH])
    match = _tcp4_match(data)
    if match is not None:
        line = match[0]
        return _new_wire_result(ProxyResultIPv4, line, SOCK_STREAM,
                                EMPTY_TLV), len(line)
    return _unpack_slow(data)


_tcp4_match = _TCP4.match
_tcp6_match = _TCP6.match


def _valid_ipv6(src: bytes, dst: bytes) -> bool:
    # The TCP6 pattern only checks the characters of the addresses.
    try:
        _inet_pton(_AF_INET6, src.decode('ascii'))
        _inet_pton(_AF_INET6, dst.decode('ascii'))
    except OSError:
        return False
    return True


def _unpack_slow(data: bytes) -> Union[tuple[ProxyResult, int], NeedMore]:
    match = _tcp6_match(data)
    if match is not None and _valid_ipv6(*match.groups()):
        line = match[0]
        return _new_wire_result(ProxyResultIPv6, line, SOCK_STREAM,
                                EMPTY_TLV), len(line)
    line_end = data.find(b'\n', 0, MAX_V1_LENGTH)
    if line_end < 0:
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyProtocolTooLongError(
                f'no CRLF in the first {MAX_V1_LENGTH} bytes',
                field='v1.crlf', offset=MAX_V1_LENGTH)
        if _is_unknown(data):
            return _NEED_LINE
        if data.endswith(b'\r'):
            # Only the CR of the final CRLF may come now.
            _check_fields(data[:-1], True)
        else:
            _check_fields(data, False)
        return _NEED_LINE
    if line_end == 0 or data[line_end - 1] != 0x0D:
        _fail('the line must end with CRLF, found a bare LF', 'v1.crlf',
              line_end)
    if _is_unknown(data):
        return ProxyResultUnknown(), line_end + 1
    _check_fields(data[:line_end - 1], True)
    # Every field is valid on its own, so the line mixes families or the
    # like: name the line as a whole.
    _fail('invalid v1 header line', 'v1', 0)


def pack_v1(result: ProxyResult, *,
            unknown: bytes = b'PROXY UNKNOWN\r\n') -> bytes:
    """Write ``result`` as a v1 line.

    IPv4 and IPv6 results become TCP4 and TCP6 lines; anything else that is
    proxied (UNKNOWN, UNIX) becomes ``unknown``. A LOCAL result cannot be
    sent in v1.

    """
    line = result._v1_line()
    if line is not None:
        return line
    if not result.proxied:
        raise ProxyProtocolBuildError(
            'v1 cannot express a LOCAL connection; use v2')
    return unknown


class ProxyProtocolV1(ProxyProtocol):
    """PROXY protocol version 1, with the 0.4 and 0.11 methods."""

    __slots__ = ()

    def is_valid(self, signature: Union[bytes, bytearray, memoryview]) -> bool:
        return bytes(signature[:6]) == V1_SIGNATURE

    def unpack(self, data: Buffer) -> ProxyResult:
        if type(data) is bytes and len(data) > 9:
            # The common lines, with no more function calls than needed
            # (what unpack_v1 does, inline); anything else goes the strict
            # way.
            family = data[9]  # b'PROXY TCP4' or b'PROXY TCP6'
            if family == 0x34:
                match = _tcp4_match(data)
                if match is not None:
                    result = _new(ProxyResultIPv4)
                    result._addr = match[0]
                    result._protocol = SOCK_STREAM
                    result._tlv = EMPTY_TLV
                    return result
            elif family == 0x36:
                match = _tcp6_match(data)
                if match is not None:
                    src, dst = match.groups()
                    try:  # _valid_ipv6, inline
                        _inet_pton(_AF_INET6, src.decode('ascii'))
                        _inet_pton(_AF_INET6, dst.decode('ascii'))
                    except OSError:
                        pass
                    else:
                        result6 = _new(ProxyResultIPv6)
                        result6._addr = match[0]
                        result6._protocol = SOCK_STREAM
                        result6._tlv = EMPTY_TLV
                        return result6
        return self._unpack(unpack_v1(data))

    def unpack_line(self, data: Buffer) -> ProxyResult:
        """Read one complete v1 line, CRLF included."""
        parsed = unpack_v1(data)
        if isinstance(parsed, NeedMore):
            _fail('the line must end with CRLF', 'v1.crlf', len(data))
        return parsed[0]

    def parse_line(self, line: bytes) -> ProxyResult:
        """The 0.4 name of :meth:`unpack_line`."""
        return self.unpack_line(line)

    def pack(self, result: ProxyResult) -> bytes:
        line = result._v1_line()
        if line is not None:
            return line
        kind = result.type
        if kind is ProxyResultType.UNIX:
            raise KeyError(kind)
        if not result.proxied:
            raise ValueError('v1 cannot express a LOCAL connection')
        return b'PROXY UNKNOWN    \r\n'  # as 0.4 and 0.11 wrote it
