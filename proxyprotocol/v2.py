"""Version 2 of the PROXY protocol: a binary header (spec section 2.2).

A 12-byte signature, a version/command byte, a family/protocol byte, a 16-bit
length, then the address block and TLVs. :func:`unpack_v2` is the strict,
incremental reader (CRC32C always verified over the bytes received);
:func:`pack_v2` the writer. :class:`ProxyProtocolV2` keeps both upstream
generations' methods.

"""

from __future__ import annotations

import socket
from socket import SOCK_DGRAM, SOCK_STREAM, AddressFamily, SocketKind
from struct import Struct
from typing import (TYPE_CHECKING, Any, Final, Iterable, Mapping, NoReturn,
                    Optional, Union)

from .base import ProxyProtocol
from .checksum import crc32c as _checksum
from .errors import (NeedMore, ProxyProtocolBuildError,
                     ProxyProtocolChecksumError, ProxyProtocolSyntaxError,
                     ProxyProtocolTooLongError)
from .result import (ProxyResult, ProxyResultIPv4, ProxyResultIPv6,
                     ProxyResultLocal, ProxyResultType, ProxyResultUnix,
                     ProxyResultUnknown)
from .result import _LAZY_TLV, _ProxyResultIP, _new_wire_result
from .tlv import (TLV, EMPTY_TLV, MAX_AUTHORITY_LENGTH, MAX_UNIQUE_ID_LENGTH,
                  ProxyProtocolTLV, Type, scan_tlvs)
from .tlv import _check_known, _scan_ssl

if TYPE_CHECKING:
    from .typing import Buffer, SockAddr

__all__ = ['ProxyProtocolV2Header', 'ProxyProtocolV2', 'unpack_v2',
           'pack_v2', 'V2_SIGNATURE', 'MAX_V2_LENGTH']

#: The 12 bytes every v2 header starts with.
V2_SIGNATURE: Final = b'\r\n\r\n\x00\r\nQUIT\n'

#: The longest header the 16-bit length field allows.
MAX_V2_LENGTH: Final = 16 + 0xFFFF

_HEADER: Final = Struct('!12sBBH')
_UNIX: Final = Struct('!108s108s')
_LENGTH: Final = Struct('!H')
_U32: Final = Struct('!L')

#: Address block sizes by family nibble (spec section 2.2).
_ADDRESS_SIZE: Final = (0, 12, 36, 216)
_PROTOCOLS: Final = (None, SOCK_STREAM, SOCK_DGRAM)
_TYPES: Final = (ProxyResultType.UNKNOWN, ProxyResultType.IPv4,
                 ProxyResultType.IPv6, ProxyResultType.UNIX)
_FAMILY_NIBBLE: Final = {ProxyResultType.IPv4: 0x10,
                         ProxyResultType.IPv6: 0x20,
                         ProxyResultType.UNIX: 0x30}
_PROTOCOL_NIBBLE: Final = {None: 0x0, SOCK_STREAM: 0x1, SOCK_DGRAM: 0x2}
_ZERO4: Final = bytes(4)


def _fail(message: str, field: str, offset: int) -> NoReturn:
    raise ProxyProtocolSyntaxError(message, field=field, offset=offset)


def _check_start(data: Union[bytes, bytearray, memoryview]) -> None:
    # Rejects a header as soon as its first bytes are wrong.
    n = min(len(data), 12)
    if bytes(data[:n]) != V2_SIGNATURE[:n]:
        _fail('not a PROXY protocol v2 signature', 'v2.signature', 0)
    if len(data) > 12:
        ver_cmd = data[12]
        if ver_cmd >> 4 != 2:
            _fail(f'version {ver_cmd >> 4} is not 2', 'v2.version', 12)
        if ver_cmd & 0xF > 1:
            _fail(f'command {ver_cmd & 0xF} is neither LOCAL (0) nor PROXY '
                  '(1)', 'v2.command', 12)
    if len(data) > 13:
        fam = data[13]
        if fam >> 4 > 3:
            _fail(f'address family {fam >> 4} is not one of UNSPEC, INET, '
                  'INET6 or UNIX', 'v2.family', 13)
        if fam & 0xF > 2:
            _fail(f'transport protocol {fam & 0xF} is not one of UNSPEC, '
                  'STREAM or DGRAM', 'v2.protocol', 13)


def unpack_v2(data: Buffer, *, max_length: int = MAX_V2_LENGTH
              ) -> Union[tuple[ProxyResult, int], NeedMore]:
    """Read a v2 header from the start of ``data``.

    Returns the result and the header's length, or ``NeedMore(want_bytes=N)``
    while it is incomplete but could still become valid. Raises
    :class:`~proxyprotocol.errors.ProxyProtocolSyntaxError` as soon as it
    cannot, :class:`~proxyprotocol.errors.ProxyProtocolTooLongError` when the
    length field says more than ``max_length`` bytes in all, and
    :class:`~proxyprotocol.errors.ProxyProtocolChecksumError` when a CRC32C
    TLV does not match the bytes received.

    """
    have = len(data)
    if have < 16:
        _check_start(data)
        return NeedMore(16 - have)
    signature, ver_cmd, fam, length = _HEADER.unpack_from(data)
    if signature != V2_SIGNATURE or ver_cmd & 0xFE != 0x20 \
            or fam >= 0x40 or fam & 0xF > 2:
        _check_start(data)
    total = 16 + length
    if total > max_length:
        raise ProxyProtocolTooLongError(
            f'header of {total} bytes is longer than the {max_length} '
            'allowed', field='v2.length', offset=14)
    family = fam >> 4
    address_size = _ADDRESS_SIZE[family]
    if length < address_size and (ver_cmd == 0x21 or length):
        _fail(f'address block of {length} bytes is shorter than the '
              f'{address_size} the family needs', 'v2.length', 14)
    if have < total:
        return NeedMore(total - have)
    if type(data) is not bytes or have != total:
        data = bytes(data[:total])
    start = 16 + address_size
    tlv: Any
    if total == start or total == 16:
        tlv, crc_at = EMPTY_TLV, -1
    elif ver_cmd == 0x21 and 1 <= family <= 2 \
            and _tlvs_ok(data, start, total):
        tlv, crc_at = _LAZY_TLV, -1  # valid, read when asked for
    else:
        tlv, crc_at = scan_tlvs(data, start, total)
    result: ProxyResult
    if ver_cmd == 0x20:
        result = ProxyResultLocal(tlv=tlv) if tlv else _LOCAL
    elif family == 1:
        result = _new_wire_result(ProxyResultIPv4, data, _PROTOCOLS[fam & 0xF],
                                  tlv)
    elif family == 2:
        result = _new_wire_result(ProxyResultIPv6, data, _PROTOCOLS[fam & 0xF],
                                  tlv)
    elif family == 3:
        src, dst = _UNIX.unpack_from(data, 16)
        result = ProxyResultUnix(_unix_path(src), _unix_path(dst),
                                 protocol=_PROTOCOLS[fam & 0xF], tlv=tlv)
    else:
        result = ProxyResultUnknown(tlv=tlv) if tlv else _UNKNOWN
    if crc_at >= 0:
        _verify_crc32c(data, crc_at, result)
    return result, total


_LOCAL: Final = ProxyResultLocal()
_UNKNOWN: Final = ProxyResultUnknown()
_new = object.__new__
_header_from = _HEADER.unpack_from
_crc_from = _U32.unpack_from

#: What ProxyProtocolV2.unpack reads inline, by the family and protocol byte
#: of a PROXY header: the result class, the offset of the TLVs and the
#: protocol; None for the rest.
_FAST_FAMILIES: Final = tuple(
    (ProxyResultIPv4, 28, _PROTOCOLS[fam & 0xF]) if 0x10 <= fam <= 0x12
    else (ProxyResultIPv6, 52, _PROTOCOLS[fam & 0xF]) if 0x20 <= fam <= 0x22
    else None for fam in range(256))
_CHECKED_TLVS: Final = frozenset({0x02, 0x03, 0x05, 0x20, 0x30})


def _tlvs_ok(data: bytes, pos: int, end: int) -> bool:
    # The TLVs data[pos:end] of a whole header (data[end:] is empty) meet
    # every rule of scan_tlvs and the CRC32C, if any, matches. False leaves
    # the header to unpack_v2, which finds the fault and names it; it may
    # also raise the error itself when it is the one unpack_v2 would raise.
    # The common cases are written out here (an ASCII SSL value needs only
    # its sub-TLVs bounded); the rare ones call the checks scan_tlvs uses.
    crc_at = 0
    try:
        while pos < end:
            tlv_type = data[pos]
            vstart = pos + 3
            pos = vstart + ((data[pos + 1] << 8) | data[pos + 2])
            if tlv_type in _CHECKED_TLVS:
                if tlv_type == 0x03:
                    if crc_at or pos - vstart != 4:
                        return False
                    crc_at = vstart
                elif pos > end:
                    return False
                elif tlv_type == 0x20:
                    if pos - vstart >= 5 and data[vstart:pos].isascii():
                        sub = vstart + 5
                        while sub < pos:
                            sub += 3 + ((data[sub + 1] << 8) | data[sub + 2])
                        if sub != pos:
                            return False
                    else:
                        _scan_ssl(data, vstart, pos)
                elif tlv_type == 0x02:
                    if pos - vstart > MAX_AUTHORITY_LENGTH \
                            or not data[vstart:pos].isascii():
                        _check_known(0x02, data, vstart, pos)
                elif tlv_type == 0x05:
                    if pos - vstart > MAX_UNIQUE_ID_LENGTH:
                        return False
                elif not data[vstart:pos].isascii():  # NETNS
                    return False
    except IndexError:
        return False
    if pos != end:
        return False
    return not crc_at or _checksum(data[:crc_at] + _ZERO4 + data[crc_at + 4:]) \
        == _crc_from(data, crc_at)[0]


_CRC_TLV_HEAD: Final = b'\x03\x00\x04'
_TLV_HEAD: Final = Struct('!BH')


def _sorted_with_crc(tlv: Mapping[int, bytes]) -> tuple[bytes, bytes]:
    # The 0.11 layout of the TLVs: one entry per type (its last value) in
    # ascending type order, with a CRC32C TLV in its place. Returns the
    # bytes up to the CRC value (they end with the CRC32C type and length)
    # and the bytes after it.
    if isinstance(tlv, TLV):
        parts = _crc_layout(tlv._entries)  # already in that order?
        if parts is not None:
            return parts
        items = dict(tlv._entries)
    else:
        items = dict(tlv.items())
    parts = _crc_layout([(t, items[t]) for t in sorted(items)
                         if 0 <= t <= 0xFF])
    assert parts is not None
    return parts


def _crc_layout(entries: Iterable[tuple[int, bytes]]
                ) -> Optional[tuple[bytes, bytes]]:
    # _sorted_with_crc for entries in strictly ascending type order; None if
    # they are not.
    head = _TLV_HEAD.pack
    before: list[bytes] = []
    after: list[bytes] = []
    out = before
    prev = -1
    for tlv_type, value in entries:
        if tlv_type <= prev or tlv_type > 0xFF:
            return None
        prev = tlv_type
        if tlv_type >= 0x03 and out is before:
            out = after
            if tlv_type == 0x03:
                continue
        out.append(head(tlv_type, len(value)))
        out.append(value)
    before.append(_CRC_TLV_HEAD)
    return b''.join(before), b''.join(after)


def _verify_crc32c(data: bytes, crc_at: int, result: ProxyResult) -> None:
    # Spec section 2.2.3: the CRC of the header as received, with the CRC
    # value itself zeroed.
    crc = _checksum(data[:crc_at] + _ZERO4 + data[crc_at + 4:])
    expected = _U32.unpack_from(data, crc_at)[0]
    if crc != expected:
        raise ProxyProtocolChecksumError(
            result, f'CRC32C is 0x{expected:08x}, the header sums to '
            f'0x{crc:08x}', offset=crc_at - 3)


def _unix_path(raw: bytes) -> str:
    # A path ends at its first NUL; a leading NUL marks Linux's abstract
    # namespace, whose name then ends at the trailing NUL padding.
    if raw[:1] == b'\x00':
        name = raw.rstrip(b'\x00')
        if name:
            return '\x00' + name[1:].decode('utf-8', 'surrogateescape')
        return ''
    end = raw.find(b'\x00')
    if end >= 0:
        raw = raw[:end]
    return raw.decode('utf-8', 'surrogateescape')


def _pack_unix_path(path: Any) -> bytes:
    if isinstance(path, str):
        raw = path.encode('utf-8', 'surrogateescape')
    elif isinstance(path, (bytes, bytearray)):
        raw = bytes(path)
    else:
        raw = b''
    if len(raw) > 108:
        raise ProxyProtocolBuildError(
            f'UNIX path of {len(raw)} bytes is longer than 108')
    return raw


def _address_block(result: ProxyResult) -> tuple[int, bytes]:
    block = result._v2_block()
    if block is not None:  # IPv4 or IPv6
        return 0x10 if len(block) == 12 else 0x20, block
    kind = result.type
    if kind is ProxyResultType.UNIX:
        return 0x30, _UNIX.pack(_pack_unix_path(result.source),
                                _pack_unix_path(result.dest))
    return 0x00, b''


def _protocol_nibble(protocol: Optional[SocketKind]) -> int:
    # The protocol nibble of a socket kind: 0 for kinds the header cannot
    # say, ValueError for what is no kind at all.
    try:
        nibble = _PROTOCOL_NIBBLE.get(protocol)
    except TypeError:  # unhashable: SocketKind() says what is wrong
        nibble = None
    if nibble is None:
        nibble = _PROTOCOL_NIBBLE.get(
            SocketKind(protocol) if protocol is not None else None, 0)
    return nibble


def pack_v2(result: ProxyResult, *, crc32c: bool = False,
            tlv: Optional[ProxyProtocolTLV] = None) -> bytes:
    """Write ``result`` as a v2 header, with its TLVs in their order.

    Args:
        result: What to send; LOCAL results send the LOCAL command.
        crc32c: Append a PP2_TYPE_CRC32C TLV (replacing any the result has)
            holding the checksum of the whole header.
        tlv: TLVs to send instead of ``result.tlv``.

    """
    family, block = _address_block(result)
    if result.proxied:
        ver_cmd = 0x21
        protocol = result.protocol
        fam = family | _PROTOCOL_NIBBLE.get(
            SocketKind(protocol) if protocol is not None else None, 0) \
            if family else 0x00
    else:
        ver_cmd, fam, block = 0x20, 0x00, b''
    tlvs = result.tlv if tlv is None else tlv
    if crc32c:
        entries = [(t, v) for t, v in tlvs.entries
                   if t != Type.PP2_TYPE_CRC32C]
        body = b''.join(bytes((t,)) + _LENGTH.pack(len(v)) + v
                        for t, v in entries)
        tlv_bytes = body + b'\x03\x00\x04' + _ZERO4
    else:
        tlv_bytes = bytes(tlvs)
    length = len(block) + len(tlv_bytes)
    if length > 0xFFFF:
        raise ProxyProtocolBuildError(
            f'header body of {length} bytes is longer than 65535')
    header = _HEADER.pack(V2_SIGNATURE, ver_cmd, fam, length) + block \
        + tlv_bytes
    if crc32c:
        header = header[:-4] + _checksum(header).to_bytes(4, 'big')
    return header


class ProxyProtocolV2Header:
    """The fixed 16 bytes of a v2 header, decoded.

    Built with either generation's keywords: 0.4's ``family`` and
    ``addr_len`` or 0.11's ``type`` and ``data_len``; all six attributes are
    set either way.

    """

    __slots__ = ('command', 'type', 'family', 'protocol', 'data_len')

    def __init__(self, command: Optional[str] = None,
                 family_or_type: Any = None,
                 protocol: Optional[SocketKind] = None,
                 length: Optional[int] = None, *,
                 type: Optional[ProxyResultType] = None,
                 family: Optional[AddressFamily] = None,
                 data_len: Optional[int] = None,
                 addr_len: Optional[int] = None) -> None:
        if isinstance(family_or_type, ProxyResultType):
            type = family_or_type
        elif family_or_type is not None:
            family = AddressFamily(family_or_type)
        if type is None and family is not None:
            type = _TYPE_OF_FAMILY.get(family)
        if family is None and type is not None:
            family = type.family
        self.command = command
        self.type = type
        self.family = family
        self.protocol = protocol
        if length is None:
            length = data_len if data_len is not None else addr_len
        self.data_len = length if length is not None else 0

    @property
    def addr_len(self) -> int:
        """The 0.4 name of :attr:`data_len`."""
        return self.data_len

    def __repr__(self) -> str:
        return (f'ProxyProtocolV2Header(command={self.command!r}, '
                f'type={self.type!r}, protocol={self.protocol!r}, '
                f'data_len={self.data_len!r})')


_TYPE_OF_FAMILY: Final = {socket.AF_UNSPEC: ProxyResultType.UNKNOWN,
                          socket.AF_INET: ProxyResultType.IPv4,
                          socket.AF_INET6: ProxyResultType.IPv6,
                          socket.AF_UNIX: ProxyResultType.UNIX}


class ProxyProtocolV2(ProxyProtocol):
    """PROXY protocol version 2, with the 0.4 and 0.11 methods.

    Args:
        max_length: The longest header accepted, in bytes; by default any
            that the length field can express.

    """

    __slots__ = ('max_length',)

    def __init__(self, *, max_length: int = MAX_V2_LENGTH) -> None:
        self.max_length = max_length

    def is_valid(self, signature: Union[bytes, bytearray, memoryview]) -> bool:
        return bytes(signature[:8]) == V2_SIGNATURE[:8]

    def unpack(self, data: Buffer) -> ProxyResult:
        # A whole PROXY header for TCP or UDP over IP, read inline with as
        # few calls as possible. It accepts no more than unpack_v2 does and
        # builds the same result; on anything else or anything wrong it
        # leaves the header to unpack_v2, which names the error.
        have = len(data)
        if type(data) is bytes and have >= 16:
            signature, ver_cmd, fam, length = _header_from(data)
            total = 16 + length
            fast = _FAST_FAMILIES[fam]
            if fast is not None and ver_cmd == 0x21 \
                    and signature == V2_SIGNATURE and total <= have \
                    and total <= self.max_length:
                cls, pos, protocol = fast
                header = data if have == total else data[:total]
                result: _ProxyResultIP
                if total == pos:
                    result = _new(cls)
                    result._addr = header
                    result._protocol = protocol
                    result._tlv = EMPTY_TLV
                    return result
                if total > pos and _tlvs_ok(header, pos, total):
                    result = _new(cls)
                    result._addr = header
                    result._protocol = protocol
                    result._tlv = _LAZY_TLV
                    return result
        parsed = unpack_v2(data, max_length=self.max_length)
        if type(parsed) is tuple:
            return parsed[0]
        return self._unpack(parsed)

    def unpack_header(self, header_data: Buffer) -> ProxyProtocolV2Header:
        """Decode the fixed 16 bytes of a header."""
        data = bytes(header_data[:16])
        if len(data) < 16:
            _check_start(data)
            _fail('a v2 header starts with 16 bytes', 'v2', len(data))
        _check_start(data)
        ver_cmd, fam = data[12], data[13]
        return ProxyProtocolV2Header(
            command='proxy' if ver_cmd & 0xF else 'local',
            type=_TYPES[fam >> 4], protocol=_PROTOCOLS[fam & 0xF],
            data_len=_LENGTH.unpack_from(data, 14)[0])

    def parse_header(self, header: Buffer) -> ProxyProtocolV2Header:
        """The 0.4 name of :meth:`unpack_header`."""
        return self.unpack_header(header)

    def unpack_data(self, header: ProxyProtocolV2Header,
                    header_data: Buffer, data: Buffer) -> ProxyResult:
        """Decode the address block and TLVs that follow ``header``."""
        fixed = bytes(header_data[:16])
        if len(fixed) < 16:
            fixed = self._fixed_bytes(header, len(data))
        return self._unpack(unpack_v2(fixed + bytes(data),
                                      max_length=MAX_V2_LENGTH))

    def parse_addresses(self, addresses: Buffer,
                        header: ProxyProtocolV2Header) -> ProxyResult:
        """The 0.4 name of :meth:`unpack_data`, arguments swapped."""
        return self.unpack_data(header, b'', addresses)

    @staticmethod
    def _fixed_bytes(header: ProxyProtocolV2Header, length: int) -> bytes:
        # Rebuilds the 16 bytes a caller described with a header object.
        if header.command == 'local':
            ver_cmd = 0x20
        elif header.command == 'proxy':
            ver_cmd = 0x21
        else:
            _fail(f'command {header.command!r} is neither local nor proxy',
                  'v2.command', 12)
        kind = header.type
        fam = _FAMILY_NIBBLE.get(kind, 0) if kind is not None else 0
        if fam:
            protocol = header.protocol
            fam |= _PROTOCOL_NIBBLE.get(
                SocketKind(protocol) if protocol is not None else None, 0)
        return _HEADER.pack(V2_SIGNATURE, ver_cmd, fam, length)

    def pack(self, result: ProxyResult) -> bytes:
        # The 0.11 layout: one TLV per type (its last value) in ascending
        # type order, and always a CRC32C TLV in its place.
        block = result._v2_block()
        if block is not None:  # IPv4 or IPv6, always proxied
            ver_cmd = 0x21
            fam = (0x10 if len(block) == 12 else 0x20) \
                | _protocol_nibble(result.protocol)
        else:
            family, block = _address_block(result)
            if result.proxied:
                ver_cmd = 0x21
                fam = family | _protocol_nibble(result.protocol) if family \
                    else 0x00
            else:
                ver_cmd, fam = 0x20, 0x00
        tlv = result.tlv
        if tlv is EMPTY_TLV:
            before, after = _CRC_TLV_HEAD, b''
        else:
            before, after = _sorted_with_crc(tlv)
        length = len(block) + len(before) + 4 + len(after)
        if length > 0xFFFF:
            raise ValueError(f'header body of {length} bytes is too long')
        start = _HEADER.pack(V2_SIGNATURE, ver_cmd, fam, length) + block \
            + before
        return start + _U32.pack(_checksum(start + _ZERO4 + after)) + after

    def build(self, source: SockAddr, dest: SockAddr, *,
              family: AddressFamily, protocol: Optional[SocketKind] = None,
              proxied: bool = True) -> bytes:
        if not proxied:
            return _HEADER.pack(V2_SIGNATURE, 0x20, 0x00, 0)
        if family not in _TYPE_OF_FAMILY:
            raise KeyError(family)
        if protocol is not None and protocol not in _PROTOCOL_NIBBLE:
            raise KeyError(protocol)
        addresses = self.build_addresses(source, dest, family=family)
        return self.build_header(addresses, family=family, protocol=protocol,
                                 proxied=proxied) + addresses

    def build_header(self, addresses: bytes, *, family: AddressFamily,
                     protocol: Optional[SocketKind] = None,
                     proxied: bool = True) -> bytes:
        """The fixed 16 bytes for an address block (the 0.4 API)."""
        kind = _TYPE_OF_FAMILY[family]
        if protocol is not None and protocol not in _PROTOCOL_NIBBLE:
            raise KeyError(protocol)
        fam = _FAMILY_NIBBLE.get(kind, 0)
        if fam:
            fam |= _PROTOCOL_NIBBLE[protocol]
        return _HEADER.pack(V2_SIGNATURE, 0x21 if proxied else 0x20, fam,
                            len(addresses))

    def build_addresses(self, source: SockAddr, dest: SockAddr, *,
                        family: AddressFamily) -> bytes:
        """The address block for socket-style addresses (the 0.4 API)."""
        from .sockaddr import result_from_sockaddrs
        if family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            return b''
        result = result_from_sockaddrs(source, dest, family=family)
        return _address_block(result)[1]
