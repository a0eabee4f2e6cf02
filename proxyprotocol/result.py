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
from typing import Any, Callable, ClassVar, Optional, Union

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
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_ntop = socket.inet_ntop
_inet_ntoa = socket.inet_ntoa


class _ProxyResultIP(ProxyResult):
    # ``_addr`` holds (source ip, dest ip, source port, dest port). A result
    # read off the wire keeps them as received (packed or text bytes) with
    # ``_decode`` set to the function that turns them into ipaddress objects
    # and ints on first access.

    __slots__ = ('_addr', '_decode', '_protocol', '_tlv')

    _address: ClassVar[type[_IP]]
    _addr: tuple[Any, ...]
    _decode: Optional[Callable[[type[_IP], tuple[Any, ...]],
                               tuple[Any, Any, int, int]]]

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
        self._decode = None
        self._protocol = protocol
        self._tlv = tlv

    @classmethod
    def _from_wire(cls, addr: tuple[Any, ...],
                   decode: Callable[[type[_IP], tuple[Any, ...]],
                                    tuple[Any, Any, int, int]],
                   protocol: Optional[SocketKind],
                   tlv: ProxyProtocolTLV) -> Any:
        self = cls.__new__(cls)
        self._addr = addr
        self._decode = decode
        self._protocol = protocol
        self._tlv = tlv
        return self

    def _decoded(self) -> tuple[Any, ...]:
        decode = self._decode
        if decode is not None:
            self._addr = decode(self._address, self._addr)
            self._decode = None
        return self._addr

    def _packed(self) -> tuple[Any, ...]:
        # Packed addresses and ports for a v2 header, decoding no more than
        # needed.
        addr = self._addr
        decode = self._decode
        if decode is decode_packed:
            return addr
        if decode is not None:
            addr = self._decoded()
        if not (0 <= addr[2] <= 0xFFFF and 0 <= addr[3] <= 0xFFFF):
            raise ProxyProtocolBuildError(
                f'ports {addr[2]} and {addr[3]} must be in 0-65535')
        return (addr[0].packed, addr[1].packed, addr[2], addr[3])

    def _v1_line(self) -> bytes:
        # The v1 header line, decoding no more than needed.
        addr = self._addr
        decode = self._decode
        ipv4 = self._address is IPv4Address
        if decode is decode_text:
            return b'PROXY %s %s %s %s %s\r\n' % (
                b'TCP4' if ipv4 else b'TCP6', *addr)
        if decode is not decode_packed:
            addr = self._packed()  # checks the ports
        if ipv4:
            return (f'PROXY TCP4 {_inet_ntoa(addr[0])} {_inet_ntoa(addr[1])} '
                    f'{addr[2]} {addr[3]}\r\n').encode('ascii')
        return (f'PROXY TCP6 {_inet_ntop(_AF_INET6, addr[0])} '
                f'{_inet_ntop(_AF_INET6, addr[1])} {addr[2]} {addr[3]}\r\n'
                ).encode('ascii')

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
        return self._tlv

    def _args(self) -> str:
        return (f'{self.source!r}, {self.dest!r}'
                f'{_protocol_repr(self._protocol)}')

    def __repr__(self) -> str:
        tlv = f', tlv={self._tlv!r}' if self._tlv else ''
        return f'{type(self).__name__}({self._args()}{tlv})'

    def __str__(self) -> str:
        return f'{self._legacy_name()}({self._args()})'


def decode_packed(address: type[_IP], addr: tuple[Any, ...]
                  ) -> tuple[Any, Any, int, int]:
    """Decode packed addresses and ports read from a v2 header."""
    src, dst, sport, dport = addr
    return (address(src), address(dst), int(sport), int(dport))


def decode_v1_packed(address: type[_IP], addr: tuple[Any, ...]
                     ) -> tuple[Any, Any, int, int]:
    """Decode packed addresses and port text read from a v1 TCP6 line."""
    src, dst, sport, dport = addr
    return (address(src), address(dst), int(sport), int(dport))


def decode_text(address: type[_IP], addr: tuple[Any, ...]
                ) -> tuple[Any, Any, int, int]:
    """Decode address and port text read from a v1 line."""
    src, dst, sport, dport = addr
    return (address(src.decode('ascii')), address(dst.decode('ascii')),
            int(sport), int(dport))


class ProxyResultIPv4(_ProxyResultIP):
    """A proxied TCP or UDP connection over IPv4."""

    __slots__ = ()

    type = ProxyResultType.IPv4
    _address = IPv4Address

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


class ProxyResultIPv6(_ProxyResultIP):
    """A proxied TCP or UDP connection over IPv6."""

    __slots__ = ()

    type = ProxyResultType.IPv6
    _address = IPv6Address

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
