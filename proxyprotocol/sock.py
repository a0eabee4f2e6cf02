"""Connection information for asyncio servers, as 0.4 and 0.11 offered it.

:class:`SocketInfo` describes a connection from its transport (or
:class:`asyncio.StreamWriter`) and the PROXY protocol result read from it:
addresses come from the result when it is proxied, else from the transport.
Both upstream generations are served by the same objects:

* 0.11: ``SocketInfo.get(transport, result, unique_id=..., dnsbl=...)``
  chooses :class:`SocketInfoProxy` (a proxied result) or
  :class:`SocketInfoLocal` (everything from the transport).
* 0.4: ``SocketInfo(transport, result=None)`` builds the same concrete
  objects in *legacy mode*, where ``str()`` keeps the 0.4 text and an
  unproxied :attr:`~SocketInfo.protocol` is the socket's raw ``proto``.
  On instances, ``info.get(name, default)``, ``info[name]`` and
  ``name in info`` read the transport's extra info.

A header only means something from a trusted proxy; these classes do not
check that. Servers that need it use :mod:`proxyprotocol.policy` through
the adapters in :mod:`proxyprotocol.aio` and :mod:`proxyprotocol.blocking`.

"""

from __future__ import annotations

import socket
from abc import ABCMeta
from collections.abc import Container
from functools import partial
from ipaddress import IPv4Address, IPv6Address, ip_address
from socket import AddressFamily, SocketKind
from ssl import SSLContext
from typing import Any, Optional, Union, overload

from typing_extensions import Protocol

from .result import (ProxyResult, ProxyResultLocal, is_ipv4, is_ipv6,
                     is_unix, is_unknown)
from .typing import Cipher, PeerCert, SockAddr, TransportProtocol

__all__ = ['SocketInfo', 'SocketInfoProxy', 'SocketInfoLocal']

_IP = Union[None, IPv4Address, IPv6Address]
_MISSING = object()
_AF_UNIX: Optional[int] = getattr(socket, 'AF_UNIX', None)


class _ClassGet(Protocol):

    def __call__(self, transport: TransportProtocol,
                 result: Optional[ProxyResult] = None, *,
                 unique_id: bytes = b'',
                 dnsbl: Optional[str] = None) -> SocketInfo:
        ...


class _InstanceGet(Protocol):

    def __call__(self, name: str, default: Any = None) -> Any:
        ...


def _choose(transport: TransportProtocol,
            result: Optional[ProxyResult] = None, *,
            unique_id: bytes = b'',
            dnsbl: Optional[str] = None) -> SocketInfo:
    if result is not None and result.proxied:
        return SocketInfoProxy(transport, result, unique_id=unique_id,
                               dnsbl=dnsbl)
    return SocketInfoLocal(transport, result, unique_id=unique_id,
                           dnsbl=dnsbl)


def _item(info: SocketInfo, name: str, default: Any = None) -> Any:
    try:
        return info[name]
    except KeyError:
        return default


class _Get:
    """``get`` on the class (0.11 classmethod) and on instances (0.4)."""

    @overload
    def __get__(self, obj: None, owner: Optional[type] = None) -> _ClassGet:
        ...

    @overload
    def __get__(self, obj: SocketInfo,
                owner: Optional[type] = None) -> _InstanceGet:
        ...

    def __get__(self, obj: Optional[SocketInfo],
                owner: Optional[type] = None
                ) -> Union[_ClassGet, _InstanceGet]:
        if obj is None:
            return _choose
        return partial(_item, obj)


class SocketInfo(Container[str], metaclass=ABCMeta):
    """What is known of a connection: from the PROXY protocol result when
    it is proxied, otherwise from the transport.

    Calling ``SocketInfo(transport, result=None)`` (the 0.4 way) returns a
    :class:`SocketInfoProxy` or :class:`SocketInfoLocal` in legacy mode.
    (0.11 declared the properties abstract; here the base raises
    :class:`NotImplementedError` instead, so that the 0.4 call also passes
    a type checker.)

    """

    __slots__ = ('_transport', 'pp_result', '_legacy')

    _transport: TransportProtocol
    #: The result given (a LOCAL result when none was).
    pp_result: ProxyResult
    _legacy: bool

    def __new__(cls, transport: TransportProtocol, *args: Any,
                **kwargs: Any) -> SocketInfo:
        legacy = cls is SocketInfo
        if legacy:
            result = args[0] if args else kwargs.get('result')
            cls = SocketInfoProxy if result is not None and result.proxied \
                else SocketInfoLocal
        self: SocketInfo = object.__new__(cls)
        self._legacy = legacy
        return self

    def __init__(self, transport: TransportProtocol,
                 result: Optional[ProxyResult] = None) -> None:
        super().__init__()
        self._transport = transport
        self.pp_result = result if result is not None \
            else ProxyResultLocal()

    #: ``SocketInfo.get(transport, result, *, unique_id=b'', dnsbl=None)``
    #: picks the implementation (0.11); ``info.get(name, default=None)`` on
    #: an instance reads the transport's extra info (0.4).
    get = _Get()

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (``get_extra_info('socket')``)."""
        sock: socket.socket = self._transport.get_extra_info('socket')
        return sock

    def _socket_family(self) -> AddressFamily:
        sock = self._transport.get_extra_info('socket')
        if sock is not None:
            family = sock.family
            try:
                return AddressFamily(family)
            except (ValueError, TypeError):
                return family  # type: ignore[no-any-return]
        # No socket (e.g. a test double): infer it from the address.
        peername = self._transport.get_extra_info('peername')
        if isinstance(peername, tuple):
            return socket.AF_INET6 if len(peername) == 4 else socket.AF_INET
        if isinstance(peername, (str, bytes)) and _AF_UNIX is not None:
            return AddressFamily(_AF_UNIX)
        return socket.AF_UNSPEC

    @property
    def _is_ip(self) -> bool:
        raise NotImplementedError

    @property
    def _is_unix(self) -> bool:
        raise NotImplementedError

    @property
    def _is_unknown(self) -> bool:
        raise NotImplementedError

    def _get_ip(self, addr: SockAddr) -> _IP:
        if not self._is_ip or not isinstance(addr, tuple):
            return None
        ip = ip_address(str(addr[0]).split('%', 1)[0])
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ip

    def _get_port(self, addr: SockAddr) -> Optional[int]:
        if not self._is_ip or not isinstance(addr, tuple):
            return None
        return int(addr[1])

    def _get_str(self, addr: SockAddr) -> Optional[str]:
        if self._is_ip:
            return f'[{self._get_ip(addr)!s}]:{self._get_port(addr)!s}'
        if self._is_unix:
            if isinstance(addr, bytes):
                return addr.decode('utf-8', 'surrogateescape')
            return addr if isinstance(addr, str) else None
        if self._is_unknown:
            return None
        return str(addr)

    @property
    def sockname(self) -> SockAddr:
        """The local address (see :meth:`socket.socket.getsockname`)."""
        raise NotImplementedError

    @property
    def sockname_ip(self) -> _IP:
        """The IP of :attr:`sockname` for IP families (IPv4-mapped IPv6
        addresses as IPv4), else None."""
        return self._get_ip(self.sockname)

    @property
    def sockname_port(self) -> Optional[int]:
        """The port of :attr:`sockname` for IP families, else None."""
        return self._get_port(self.sockname)

    @property
    def sockname_str(self) -> Optional[str]:
        """:attr:`sockname` as text: ``[ip]:port``, or a UNIX path."""
        return self._get_str(self.sockname)

    @property
    def peername(self) -> SockAddr:
        """The remote address (see :meth:`socket.socket.getpeername`)."""
        raise NotImplementedError

    @property
    def peername_ip(self) -> _IP:
        """The IP of :attr:`peername` for IP families (IPv4-mapped IPv6
        addresses as IPv4), else None."""
        return self._get_ip(self.peername)

    @property
    def peername_port(self) -> Optional[int]:
        """The port of :attr:`peername` for IP families, else None."""
        return self._get_port(self.peername)

    @property
    def peername_str(self) -> Optional[str]:
        """:attr:`peername` as text: ``[ip]:port``, or a UNIX path."""
        return self._get_str(self.peername)

    @property
    def family(self) -> AddressFamily:
        """The address family (see :attr:`socket.socket.family`)."""
        raise NotImplementedError

    @property
    def protocol(self) -> Optional[SocketKind]:
        """The socket kind (see :attr:`socket.socket.type`)."""
        raise NotImplementedError

    @property
    def compression(self) -> Optional[str]:
        """The TLS compression method, where known."""
        raise NotImplementedError

    @property
    def cipher(self) -> Optional[Cipher]:
        """The TLS cipher as :meth:`ssl.SSLSocket.cipher`, where known."""
        raise NotImplementedError

    @property
    def peercert(self) -> Optional[PeerCert]:
        """The client certificate as :meth:`ssl.SSLSocket.getpeercert`,
        where known."""
        raise NotImplementedError

    @property
    def unique_id(self) -> bytes:
        """An identifier of the connection: the header's, else the one
        given."""
        raise NotImplementedError

    @property
    def dnsbl(self) -> Optional[str]:
        """The DNSBL result for the client, if any; usually any value means
        the client should be refused."""
        raise NotImplementedError

    @property
    def ssl_context(self) -> Optional[SSLContext]:
        """The TLS context of the connection, if any (0.4)."""
        context: Optional[SSLContext] = \
            self._transport.get_extra_info('sslcontext')
        return context

    @property
    def from_localhost(self) -> bool:
        """True for UNIX sockets and for loopback IP addresses."""
        if self._is_unix:
            return True
        ip = self.peername_ip
        return ip is not None and ip.is_loopback

    def __getitem__(self, name: str) -> Any:
        value = self._transport.get_extra_info(name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._transport.get_extra_info(name, _MISSING) is not _MISSING

    def __repr__(self) -> str:
        return f'<{type(self).__name__}>'

    def __str__(self) -> str:
        if not self._legacy:
            return repr(self)
        proxied = ' proxied=True' if self.pp_result.proxied else ''
        return (f'<SocketInfo peername={self.peername_str!r} '
                f'sockname={self.sockname_str!r} '
                f'peercert={self.peercert!r}{proxied}>')


class SocketInfoProxy(SocketInfo):
    """Connection information from a proxied PROXY protocol result.

    Args:
        transport: The transport or :class:`asyncio.StreamWriter`.
        result: The (proxied) result.
        unique_id: The identifier to use when the header carries none.
        dnsbl: The DNSBL result to use when the header carries none.

    """

    __slots__ = ('_result', '_unique_id', '_dnsbl')

    def __init__(self, transport: TransportProtocol,
                 result: ProxyResult, *, unique_id: bytes = b'',
                 dnsbl: Optional[str] = None) -> None:
        super().__init__(transport, result)
        self._result = result
        self._unique_id = unique_id
        self._dnsbl = dnsbl

    @property
    def _is_ip(self) -> bool:
        result = self._result
        return is_ipv4(result) or is_ipv6(result)

    @property
    def _is_unix(self) -> bool:
        return is_unix(self._result)

    @property
    def _is_unknown(self) -> bool:
        return is_unknown(self._result)

    @property
    def sockname(self) -> SockAddr:
        return self._result.sockname

    @property
    def peername(self) -> SockAddr:
        return self._result.peername

    @property
    def family(self) -> AddressFamily:
        return self._result.family

    @property
    def protocol(self) -> Optional[SocketKind]:
        return self._result.protocol

    @property
    def compression(self) -> Optional[str]:
        return self._result.tlv.ext.compression

    @property
    def cipher(self) -> Optional[Cipher]:
        tlv = self._result.tlv
        if not tlv.ssl.has_ssl:
            return None
        return (tlv.ssl.cipher or '', tlv.ssl.version or '',
                tlv.ext.secret_bits or None)

    @property
    def peercert(self) -> Optional[PeerCert]:
        if self._legacy:
            # 0.4 always read it from the transport.
            cert: Optional[PeerCert] = \
                self._transport.get_extra_info('peercert')
            return cert
        return self._result.tlv.ext.peercert

    @property
    def unique_id(self) -> bytes:
        # The header's wins (0.11); 0.11 gave b'' when it had none.
        return self._result.tlv.unique_id or self._unique_id

    @property
    def dnsbl(self) -> Optional[str]:
        dnsbl = self._result.tlv.ext.dnsbl
        return self._dnsbl if dnsbl is None else dnsbl

    def __repr__(self) -> str:
        fields: dict[str, object] = {'peername': self.peername_str,
                                     'sockname': self.sockname_str}
        result = self._result
        if is_unknown(result):
            fields['exc'] = result.exception
        text = ''.join(f' {key}={value!r}' for key, value in fields.items()
                       if value is not None)
        return f'<SocketInfoProxy{text}>'


class SocketInfoLocal(SocketInfo):
    """Connection information from the transport alone.

    Args:
        transport: The transport or :class:`asyncio.StreamWriter`.
        result: The (unproxied) result, if any, for :attr:`pp_result`.
        unique_id: An identifier for the connection.
        dnsbl: The DNSBL result for the client, if any.

    """

    __slots__ = ('_unique_id', '_dnsbl')

    def __init__(self, transport: TransportProtocol,
                 result: Optional[ProxyResult] = None, *,
                 unique_id: bytes = b'',
                 dnsbl: Optional[str] = None) -> None:
        super().__init__(transport, result)
        self._unique_id = unique_id
        self._dnsbl = dnsbl

    @property
    def _is_ip(self) -> bool:
        return self.family in (socket.AF_INET, socket.AF_INET6)

    @property
    def _is_unix(self) -> bool:
        return _AF_UNIX is not None and self.family == _AF_UNIX

    @property
    def _is_unknown(self) -> bool:
        return self.family == socket.AF_UNSPEC

    @property
    def sockname(self) -> SockAddr:
        sockname: SockAddr = self._transport.get_extra_info('sockname')
        return sockname

    @property
    def peername(self) -> SockAddr:
        peername: SockAddr = self._transport.get_extra_info('peername')
        return peername

    @property
    def family(self) -> AddressFamily:
        return self._socket_family()

    @property
    def protocol(self) -> Optional[SocketKind]:
        sock = self._transport.get_extra_info('socket')
        if sock is None:
            return None
        if self._legacy:
            # 0.4 returned the raw protocol number.
            proto: Optional[SocketKind] = sock.proto
            return proto
        return SocketKind(sock.type)

    @property
    def compression(self) -> Optional[str]:
        compression: Optional[str] = \
            self._transport.get_extra_info('compression')
        return compression

    @property
    def cipher(self) -> Optional[Cipher]:
        cipher: Optional[Cipher] = self._transport.get_extra_info('cipher')
        return cipher

    @property
    def peercert(self) -> Optional[PeerCert]:
        cert: Optional[PeerCert] = self._transport.get_extra_info('peercert')
        return cert

    @property
    def unique_id(self) -> bytes:
        return self._unique_id

    @property
    def dnsbl(self) -> Optional[str]:
        return self._dnsbl

    def __repr__(self) -> str:
        return (f'<SocketInfoLocal peername={self.peername_str!r} '
                f'sockname={self.sockname_str!r}>')
