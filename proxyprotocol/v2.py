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
from typing import TYPE_CHECKING, Any, Final, Mapping, NoReturn, Optional, Union

from .base import ProxyProtocol
from .checksum import crc32c as _checksum
from .errors import (NeedMore, ProxyProtocolBuildError,
                     ProxyProtocolChecksumError, ProxyProtocolSyntaxError,
                     ProxyProtocolTooLongError)
from .result import (ProxyResult, ProxyResultIPv4, ProxyResultIPv6,
                     ProxyResultLocal, ProxyResultType, ProxyResultUnix,
                     ProxyResultUnknown, decode_packed)
from .tlv import TLV, EMPTY_TLV, ProxyProtocolTLV, Type, scan_tlvs

if TYPE_CHECKING:
    from .typing import Buffer, SockAddr

__all__ = ['ProxyProtocolV2Header', 'ProxyProtocolV2', 'unpack_v2',
           'pack_v2', 'V2_SIGNATURE', 'MAX_V2_LENGTH']

#: The 12 bytes every v2 header starts with.
V2_SIGNATURE: Final = b'\r\n\r\n\x00\r\nQUIT\n'

#: The longest header the 16-bit length field allows.
MAX_V2_LENGTH: Final = 16 + 0xFFFF

_HEADER: Final = Struct('!12sBBH')
_INET: Final = Struct('!4s4sHH')
_INET6: Final = Struct('!16s16sHH')
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
    if total == 16 + address_size or total == 16:
        tlv, crc_at = EMPTY_TLV, -1
    else:
        tlv, crc_at = scan_tlvs(data, 16 + address_size, total)
    result: ProxyResult
    if ver_cmd == 0x20:
        result = ProxyResultLocal(tlv=tlv) if tlv else _LOCAL
    elif family == 1:
        result = _new_ipv4(_INET.unpack_from(data, 16), decode_packed,
                           _PROTOCOLS[fam & 0xF], tlv)
    elif family == 2:
        result = _new_ipv6(_INET6.unpack_from(data, 16), decode_packed,
                           _PROTOCOLS[fam & 0xF], tlv)
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
_new_ipv4 = ProxyResultIPv4._from_wire
_new_ipv6 = ProxyResultIPv6._from_wire
_UNKNOWN: Final = ProxyResultUnknown()


_CRC_TLV_ZERO: Final = b'\x03\x00\x04' + _ZERO4
_TLV_HEAD: Final = Struct('!BH')


def _sorted_with_crc(tlv: Mapping[int, bytes]) -> tuple[bytes, int]:
    # Serializes one entry per type in ascending order, with a zeroed CRC32C
    # TLV; returns the bytes and the offset of the CRC value.
    items = dict(tlv._mapping() if isinstance(tlv, TLV) else tlv.items())
    items[0x03] = _ZERO4
    head = _TLV_HEAD.pack
    parts = []
    pos = crc_at = 0
    for tlv_type in sorted(items):
        if not 0 <= tlv_type <= 0xFF:
            continue
        value = items[tlv_type]
        if tlv_type == 0x03:
            crc_at = pos + 3
        parts.append(head(tlv_type, len(value)))
        parts.append(value)
        pos += 3 + len(value)
    return b''.join(parts), crc_at


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
    kind = result.type
    if kind is ProxyResultType.IPv4:
        assert isinstance(result, ProxyResultIPv4)
        return 0x10, _INET.pack(*result._packed())
    if kind is ProxyResultType.IPv6:
        assert isinstance(result, ProxyResultIPv6)
        return 0x20, _INET6.pack(*result._packed())
    if kind is ProxyResultType.UNIX:
        return 0x30, _UNIX.pack(_pack_unix_path(result.source),
                                _pack_unix_path(result.dest))
    return 0x00, b''


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
        family, block = _address_block(result)
        if result.proxied:
            ver_cmd = 0x21
            if family:
                protocol = result.protocol
                fam = family | _PROTOCOL_NIBBLE.get(
                    SocketKind(protocol) if protocol is not None else None, 0)
            else:
                fam = 0x00
        else:
            ver_cmd, fam = 0x20, 0x00
        tlv = result.tlv
        if tlv:
            tlv_bytes, crc_at = _sorted_with_crc(tlv)
        else:
            tlv_bytes, crc_at = _CRC_TLV_ZERO, 3
        length = len(block) + len(tlv_bytes)
        if length > 0xFFFF:
            raise ValueError(f'header body of {length} bytes is too long')
        header = _HEADER.pack(V2_SIGNATURE, ver_cmd, fam, length) + block \
            + tlv_bytes
        crc_at += 16 + len(block)
        return header[:crc_at] + _checksum(header).to_bytes(4, 'big') \
            + header[crc_at + 4:]

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
