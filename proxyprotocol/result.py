"""What a PROXY protocol header says about the original connection.

One immutable class per kind of header: :class:`ProxyResultLocal` (the proxy
speaks for itself: use the real socket), :class:`ProxyResultUnknown` (proxied,
but the addresses are not given or not known), :class:`ProxyResultIPv4`,
:class:`ProxyResultIPv6` and :class:`ProxyResultUnix`. Results compare equal
when they say the same thing, and hash accordingly.

Addresses received on the wire are decoded on first access, so a server that
only forwards a header, or only reads its TLVs, does not pay for
:mod:`ipaddress` objects it never uses.

The 0.4 names (``ProxyProtocolResult``, ``ProxyProtocolResultIPv4``, ...) are
the same classes under their old names; ``str()`` keeps the 0.4 text and
``repr()`` the 0.11 text.

"""

from __future__ import annotations

import socket
from abc import ABCMeta, abstractmethod
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from socket import AddressFamily, SocketKind
from struct import Struct
from struct import error as StructError
from typing import Any, ClassVar, Final, Optional, TypeVar, Union

from typing_extensions import TypeGuard

from .errors import ProxyProtocolBuildError
from .tlv import EMPTY_TLV, ProxyProtocolTLV
from .typing import Address, SockAddr

__all__ = ['is_local', 'is_unknown', 'is_ipv4', 'is_ipv6', 'is_unix',
           'ProxyResultType', 'ProxyResult', 'ProxyResultLocal',
           'ProxyResultUnknown', 'ProxyResultIPv4', 'ProxyResultIPv6',
           'ProxyResultUnix', 'ProxyProtocolResult',
           'ProxyProtocolResultLocal', 'ProxyProtocolResultUnknown',
           'ProxyProtocolResultIPv4', 'ProxyProtocolResultIPv6',
           'ProxyProtocolResultUnix']


class ProxyResultType(Enum):
    """The kind of a result, with the socket family it stands for."""

    LOCAL = (1, 'AF_UNSPEC')
    UNKNOWN = (2, 'AF_UNSPEC')
    IPv4 = (3, 'AF_INET')
    IPv6 = (4, 'AF_INET6')
    UNIX = (5, 'AF_UNIX')

    @property
    def family(self) -> AddressFamily:
        """The socket address family of this kind of result."""
        family: AddressFamily = getattr(socket, self.value[1])
        return family


def is_local(result: ProxyResult) -> TypeGuard[ProxyResultLocal]:
    """The result is a LOCAL header: use the real connection."""
    return result.type is ProxyResultType.LOCAL


def is_unknown(result: ProxyResult) -> TypeGuard[ProxyResultUnknown]:
    """The result is proxied from an unknown or unsupported address."""
    return result.type is ProxyResultType.UNKNOWN


def is_ipv4(result: ProxyResult) -> TypeGuard[ProxyResultIPv4]:
    """The result carries IPv4 addresses."""
    return result.type is ProxyResultType.IPv4


def is_ipv6(result: ProxyResult) -> TypeGuard[ProxyResultIPv6]:
    """The result carries IPv6 addresses."""
    return result.type is ProxyResultType.IPv6


def is_unix(result: ProxyResult) -> TypeGuard[ProxyResultUnix]:
    """The result carries UNIX socket paths."""
    return result.type is ProxyResultType.UNIX


def _protocol_repr(protocol: Optional[SocketKind]) -> str:
    if protocol is None:
        return ''
    return f', protocol=socket.{protocol.name}'


class ProxyResult(metaclass=ABCMeta):
    """The base of every result.

    ``source`` is the original client, ``dest`` the address it connected to;
    ``peername`` and ``sockname`` give them as :mod:`socket` would.

    """

    __slots__ = ()

    type: ClassVar[ProxyResultType]

    @property
    @abstractmethod
    def proxied(self) -> bool:
        """False only for LOCAL: the connection is the proxy's own."""
        ...

    @property
    @abstractmethod
    def source(self) -> Address:
        """The original source address."""
        ...

    @property
    @abstractmethod
    def dest(self) -> Address:
        """The original destination address."""
        ...

    @property
    @abstractmethod
    def tlv(self) -> ProxyProtocolTLV:
        """The header's TLVs (empty for v1)."""
        ...

    @property
    @abstractmethod
    def peername(self) -> SockAddr:
        """The source as :meth:`socket.socket.getpeername` gives it."""
        ...

    @property
    @abstractmethod
    def sockname(self) -> SockAddr:
        """The destination as :meth:`socket.socket.getsockname` gives it."""
        ...

    @property
    def family(self) -> AddressFamily:
        """The original socket family."""
        return self.type.family

    @property
    def protocol(self) -> Optional[SocketKind]:
        """The original socket kind, when the header says."""
        return None

    @property
    def _peername(self) -> SockAddr:
        return self.peername

    @property
    def _sockname(self) -> SockAddr:
        return self.sockname

    def _key(self) -> tuple[Any, ...]:
        return (self.type, self.source, self.dest, self.protocol, self.tlv)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProxyResult):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def _v1_line(self) -> Optional[bytes]:
        # The v1 line of an IP result; None for the other kinds.
        return None

    def _v2_block(self) -> Optional[bytes]:
        # The v2 address block of an IP result; None for the other kinds.
        return None

    def _legacy_name(self) -> str:
        return type(self).__name__.replace('ProxyResult',
                                           'ProxyProtocolResult', 1)


class ProxyResultLocal(ProxyResult):
    """A LOCAL header: the proxy connected on its own behalf (health checks).

    The receiver uses the real connection's addresses.

    """

    __slots__ = ('_tlv',)

    type = ProxyResultType.LOCAL

    def __init__(self, *, tlv: ProxyProtocolTLV = EMPTY_TLV) -> None:
        self._tlv = tlv

    @property
    def proxied(self) -> bool:
        return False

    @property
    def source(self) -> None:
        return None

    @property
    def dest(self) -> None:
        return None

    @property
    def tlv(self) -> ProxyProtocolTLV:
        return self._tlv

    @property
    def peername(self) -> None:
        return None

    @property
    def sockname(self) -> None:
        return None

    def __repr__(self) -> str:
        if self._tlv:
            return f'ProxyResultLocal(tlv={self._tlv!r})'
        return 'ProxyResultLocal()'

    def __str__(self) -> str:
        return 'ProxyProtocolResultLocal()'


class ProxyResultUnknown(ProxyResult):
    """A proxied connection whose original addresses are not known.

    Sent as v1 ``UNKNOWN`` or v2 PROXY with the UNSPEC family; the receiver
    uses the real connection's addresses. Adapters also return it, holding
    the ``exception``, when no header could be read.

    """

    __slots__ = ('_exception', '_tlv')

    type = ProxyResultType.UNKNOWN

    def __init__(self, exception: Optional[Exception] = None, *,
                 tlv: ProxyProtocolTLV = EMPTY_TLV) -> None:
        self._exception = exception
        self._tlv = tlv

    @property
    def exception(self) -> Optional[Exception]:
        """Why no header could be read, if that is the case."""
        return self._exception

    @property
    def proxied(self) -> bool:
        return True

    @property
    def source(self) -> None:
        return None

    @property
    def dest(self) -> None:
        return None

    @property
    def tlv(self) -> ProxyProtocolTLV:
        return self._tlv

    @property
    def peername(self) -> None:
        return None

    @property
    def sockname(self) -> None:
        return None

    def _key(self) -> tuple[Any, ...]:
        return (self.type, self._exception, self._tlv)

    def __repr__(self) -> str:
        args = []
        if self._exception is not None:
            args.append(repr(self._exception))
        if self._tlv:
            args.append(f'tlv={self._tlv!r}')
        return f'ProxyResultUnknown({", ".join(args)})'

    def __str__(self) -> str:
        return 'ProxyProtocolResultUnknown()'


_IP = Union[IPv4Address, IPv6Address]
_ResultT = TypeVar('_ResultT', bound='_ProxyResultIP')
_new_parsed_tlv = ProxyProtocolTLV._from_parsed
_AF_INET6 = socket.AF_INET6
_inet_ntop = socket.inet_ntop
_inet_ntoa = socket.inet_ntoa
_inet_pton = socket.inet_pton
_new = object.__new__

#: The address blocks of v2 INET and INET6 headers, after the fixed 16 bytes.
_V2_INET: Final = Struct('!4s4sHH')
_V2_INET6: Final = Struct('!16s16sHH')
#: The same blocks packed from the integer values of the addresses.
_V2_INET_INTS: Final = Struct('!LLHH')
_V2_INET6_INTS: Final = Struct('!QQQQHH')
_TWO_U32: Final = Struct('!LL')
_U64: Final = 0xFFFFFFFFFFFFFFFF
#: What reading the private ``_ip`` of an ipaddress object may raise if a
#: Python version ever stores it otherwise; the public API is used then.
_NO_PRIVATE: Final = (AttributeError, TypeError, StructError)
#: The decimal text of every byte value, to write dotted IPv4 addresses.
_OCTETS: Final = tuple(b'%d' % n for n in range(256))
_V1_TCP4: Final = b'PROXY TCP4 %b.%b.%b.%b %b.%b.%b.%b %d %d\r\n'

#: The ``_tlv`` of a result read from a v2 header whose TLVs are not wrapped
#: in a :class:`ProxyProtocolTLV` yet (Ellipsis: copy and pickle keep it).
_LAZY_TLV: Final[Any] = ...


def _port_error(sport: int, dport: int) -> ProxyProtocolBuildError:
    return ProxyProtocolBuildError(
        f'ports {sport} and {dport} must be in 0-65535')


class _ProxyResultIP(ProxyResult):
    # ``_addr`` holds (source ip, dest ip, source port, dest port) as
    # ipaddress objects and ints, or, for a result read off the wire, the
    # bytes it was read from: the whole v1 line or the whole v2 header
    # (told apart by their first byte). Those are decoded on first access,
    # in one store, so that a result shared between threads never mixes the
    # two forms. A v2 result with TLVs keeps ``_tlv`` as _LAZY_TLV until
    # they are asked for; it is resolved before ``_addr`` is replaced.

    __slots__ = ('_addr', '_protocol', '_tlv')

    _address: ClassVar[type[_IP]]
    #: Where the TLVs start in a v2 header of this family.
    _tlv_start: ClassVar[int]
    _addr: Any
    _tlv: Any

    def __init__(self, source: tuple[_IP, int], dest: tuple[_IP, int], *,
                 protocol: Optional[SocketKind] = None,
                 tlv: ProxyProtocolTLV = EMPTY_TLV) -> None:
        address = self._address
        src, dst = source[0], dest[0]
        if type(src) is not address:
            src = address(src)
        if type(dst) is not address:
            dst = address(dst)
        self._addr = (src, dst, int(source[1]), int(dest[1]))
        self._protocol = protocol
        self._tlv = tlv

    def _decoded(self) -> tuple[Any, ...]:
        addr = self._addr
        if type(addr) is tuple:
            return addr
        if self._tlv is _LAZY_TLV:
            self._tlv = _new_parsed_tlv(None, addr[self._tlv_start:])
        decoded = self._decode_wire(addr)
        self._addr = decoded
        return decoded

    def _decode_wire(self, raw: bytes) -> tuple[Any, Any, int, int]:
        # The addresses and ports of a v1 line or a v2 header.
        address = self._address
        if raw[0] == 0x50:  # b'P': a v1 line, validated when it was read
            src, dst, sport, dport = raw[11:-2].split(b' ')
            if address is IPv6Address:
                return (address(_inet_pton(_AF_INET6, src.decode('ascii'))),
                        address(_inet_pton(_AF_INET6, dst.decode('ascii'))),
                        int(sport), int(dport))
            return (address(src.decode('ascii')), address(dst.decode('ascii')),
                    int(sport), int(dport))
        block = _V2_INET if address is IPv4Address else _V2_INET6
        src, dst, sport, dport = block.unpack_from(raw, 16)
        return (address(src), address(dst), sport, dport)

    def _packed(self) -> tuple[Any, ...]:
        # Packed addresses and ports, decoding no more than needed.
        addr = self._addr
        if type(addr) is not tuple:
            if addr[0] != 0x50:  # a v2 header
                block = _V2_INET if self._address is IPv4Address \
                    else _V2_INET6
                return block.unpack_from(addr, 16)
            addr = self._decoded()
        src, dst, sport, dport = addr
        if not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF):
            raise _port_error(sport, dport)
        return (src.packed, dst.packed, sport, dport)

    @property
    def proxied(self) -> bool:
        return True

    @property
    def source_ip(self) -> Any:
        """The original source IP address."""
        return self._decoded()[0]

    @property
    def dest_ip(self) -> Any:
        """The original destination IP address."""
        return self._decoded()[1]

    @property
    def source_port(self) -> int:
        """The original source port."""
        port: int = self._decoded()[2]
        return port

    @property
    def dest_port(self) -> int:
        """The original destination port."""
        port: int = self._decoded()[3]
        return port

    @property
    def source(self) -> Any:
        addr = self._decoded()
        return (addr[0], addr[2])

    @property
    def dest(self) -> Any:
        addr = self._decoded()
        return (addr[1], addr[3])

    @property
    def protocol(self) -> Optional[SocketKind]:
        return self._protocol

    @property
    def tlv(self) -> ProxyProtocolTLV:
        addr = self._addr  # read first: see the class comment
        tlv = self._tlv
        if tlv is _LAZY_TLV:
            tlv = self._tlv = _new_parsed_tlv(None, addr[self._tlv_start:])
        return tlv  # type: ignore[no-any-return]

    def _args(self) -> str:
        return (f'{self.source!r}, {self.dest!r}'
                f'{_protocol_repr(self._protocol)}')

    def __repr__(self) -> str:
        tlv = self.tlv
        tlv_arg = f', tlv={tlv!r}' if tlv else ''
        return f'{type(self).__name__}({self._args()}{tlv_arg})'

    def __str__(self) -> str:
        return f'{self._legacy_name()}({self._args()})'


def _new_wire_result(cls: type[_ResultT], raw: bytes,
                     protocol: Optional[SocketKind],
                     tlv: Any) -> _ResultT:
    """A result of ``cls`` read from ``raw``, a v1 line or a v2 header.

    ``raw`` must hold exactly the header, already validated; ``tlv`` is a
    :class:`ProxyProtocolTLV` or _LAZY_TLV (for a v2 header with TLVs).

    """
    self = _new(cls)
    self._addr = raw
    self._protocol = protocol
    self._tlv = tlv
    return self


class ProxyResultIPv4(_ProxyResultIP):
    """A proxied TCP or UDP connection over IPv4."""

    __slots__ = ()

    type = ProxyResultType.IPv4
    _address = IPv4Address
    _tlv_start = 28

    source: tuple[IPv4Address, int]
    dest: tuple[IPv4Address, int]

    @property
    def peername(self) -> tuple[str, int]:
        addr = self._decoded()
        return (str(addr[0]), addr[2])

    @property
    def sockname(self) -> tuple[str, int]:
        addr = self._decoded()
        return (str(addr[1]), addr[3])

    def _v1_line(self) -> bytes:
        addr = self._addr
        if type(addr) is tuple:
            src, dst, sport, dport = addr
            try:
                # IPv4Address keeps its value in _ip; .packed is the
                # public (slower) way to the same bytes.
                octets = _TWO_U32.pack(src._ip, dst._ip)
            except _NO_PRIVATE:  # pragma: no cover - another ipaddress
                octets = src.packed + dst.packed
            if not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF):
                raise _port_error(sport, dport)
            text = _OCTETS
            return _V1_TCP4 % (
                text[octets[0]], text[octets[1]], text[octets[2]],
                text[octets[3]], text[octets[4]], text[octets[5]],
                text[octets[6]], text[octets[7]], sport, dport)
        if addr[0] == 0x50:
            return addr  # type: ignore[no-any-return]  # the line as read
        src, dst, sport, dport = _V2_INET.unpack_from(addr, 16)
        return (f'PROXY TCP4 {_inet_ntoa(src)} {_inet_ntoa(dst)} '
                f'{sport} {dport}\r\n').encode('ascii')

    def _v2_block(self) -> bytes:
        addr = self._addr
        if type(addr) is tuple:
            src, dst, sport, dport = addr
            if 0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF:
                try:
                    return _V2_INET_INTS.pack(src._ip, dst._ip, sport, dport)
                except _NO_PRIVATE:  # pragma: no cover - another ipaddress
                    pass
        elif addr[0] != 0x50:
            return addr[16:28]  # type: ignore[no-any-return]
        return _V2_INET.pack(*self._packed())


class ProxyResultIPv6(_ProxyResultIP):
    """A proxied TCP or UDP connection over IPv6."""

    __slots__ = ()

    type = ProxyResultType.IPv6
    _address = IPv6Address
    _tlv_start = 52

    source: tuple[IPv6Address, int]
    dest: tuple[IPv6Address, int]

    @property
    def peername(self) -> tuple[str, int, int, int]:
        addr = self._decoded()
        return (str(addr[0]), addr[2], 0, 0)

    @property
    def sockname(self) -> tuple[str, int, int, int]:
        addr = self._decoded()
        return (str(addr[1]), addr[3], 0, 0)

    def _v1_line(self) -> bytes:
        src, dst, sport, dport = self._packed()
        return (f'PROXY TCP6 {_inet_ntop(_AF_INET6, src)} '
                f'{_inet_ntop(_AF_INET6, dst)} {sport} {dport}\r\n'
                ).encode('ascii')

    def _v2_block(self) -> bytes:
        addr = self._addr
        if type(addr) is tuple:
            src, dst, sport, dport = addr
            if 0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF:
                try:
                    # IPv6Address keeps its value in _ip (see IPv4).
                    s, d = src._ip, dst._ip
                    return _V2_INET6_INTS.pack(s >> 64, s & _U64, d >> 64,
                                               d & _U64, sport, dport)
                except _NO_PRIVATE:  # pragma: no cover - another ipaddress
                    pass
        elif addr[0] != 0x50:
            return addr[16:52]  # type: ignore[no-any-return]
        return _V2_INET6.pack(*self._packed())


class ProxyResultUnix(ProxyResult):
    """A proxied connection over UNIX sockets, with both paths.

    A path that starts with a NUL character is in Linux's abstract namespace.

    """

    __slots__ = ('_source', '_dest', '_protocol', '_tlv')

    type = ProxyResultType.UNIX

    def __init__(self, source: str, dest: str, *,
                 protocol: Optional[SocketKind] = None,
                 tlv: ProxyProtocolTLV = EMPTY_TLV) -> None:
        self._source = source
        self._dest = dest
        self._protocol = protocol
        self._tlv = tlv

    @property
    def proxied(self) -> bool:
        return True

    @property
    def source(self) -> str:
        return self._source

    @property
    def dest(self) -> str:
        return self._dest

    @property
    def protocol(self) -> Optional[SocketKind]:
        return self._protocol

    @property
    def tlv(self) -> ProxyProtocolTLV:
        return self._tlv

    @property
    def peername(self) -> str:
        return self._source

    @property
    def sockname(self) -> str:
        return self._dest

    def _args(self) -> str:
        return (f'{self._source!r}, {self._dest!r}'
                f'{_protocol_repr(self._protocol)}')

    def __repr__(self) -> str:
        tlv = f', tlv={self._tlv!r}' if self._tlv else ''
        return f'ProxyResultUnix({self._args()}{tlv})'

    def __str__(self) -> str:
        return f'ProxyProtocolResultUnix({self._args()})'


#: 0.4 names of the same classes.
ProxyProtocolResult = ProxyResult
ProxyProtocolResultLocal = ProxyResultLocal
ProxyProtocolResultUnknown = ProxyResultUnknown
ProxyProtocolResultIPv4 = ProxyResultIPv4
ProxyProtocolResultIPv6 = ProxyResultIPv6
ProxyProtocolResultUnix = ProxyResultUnix
