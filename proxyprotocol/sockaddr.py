"""Turn socket-style addresses into results, for building headers.

A socket gives addresses as ``(host, port)``, ``(host, port, flow, scope)``,
a UNIX path, or None. :func:`result_from_sockaddrs` makes the result that a
proxy sends for them: IPv4 and IPv6 pairs as such, a mixed pair promoted to
IPv6 with the IPv4 side mapped (``::ffff:a.b.c.d``, as HAProxy does), UNIX
paths as UNIX, and anything else as UNKNOWN.

"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address
from socket import AddressFamily, SocketKind
from typing import Any, Optional, Union

from .errors import ProxyProtocolBuildError
from .result import (ProxyResult, ProxyResultIPv4, ProxyResultIPv6,
                     ProxyResultLocal, ProxyResultUnix, ProxyResultUnknown)
from .tlv import EMPTY_TLV, ProxyProtocolTLV

__all__ = ['result_from_sockaddrs']

_IP = Union[IPv4Address, IPv6Address]


def _ip_port(address: Any) -> Optional[tuple[_IP, int]]:
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    try:
        ip = host if isinstance(host, (IPv4Address, IPv6Address)) \
            else ip_address(str(host).split('%', 1)[0])
        port = int(port)
    except ValueError as exc:
        raise ProxyProtocolBuildError(f'invalid address {address!r}') from exc
    if not 0 <= port <= 0xFFFF:
        raise ProxyProtocolBuildError(f'port {port} is not in 0-65535')
    return ip, port


def _as_ipv6(ip: _IP) -> IPv6Address:
    if isinstance(ip, IPv6Address):
        return ip
    return IPv6Address(b'\x00' * 10 + b'\xff\xff' + ip.packed)


def _path(address: Any) -> Optional[str]:
    if isinstance(address, str):
        return address
    if isinstance(address, (bytes, bytearray)):
        # Linux gives abstract-namespace addresses as bytes.
        return bytes(address).decode('utf-8', 'surrogateescape')
    return None


def result_from_sockaddrs(source: Any, dest: Any, *,
                          family: Optional[AddressFamily] = None,
                          protocol: Optional[SocketKind] = None,
                          proxied: bool = True,
                          tlv: ProxyProtocolTLV = EMPTY_TLV) -> ProxyResult:
    """The result describing a connection from ``source`` to ``dest``.

    Args:
        source: The client's address, as ``getpeername()`` gives it.
        dest: The address it connected to, as ``getsockname()`` gives it.
        family: The socket family; inferred from the addresses when None.
        protocol: ``SOCK_STREAM`` or ``SOCK_DGRAM``, when known.
        proxied: False for a LOCAL result (the proxy's own connection).
        tlv: The TLVs to carry.

    Raises:
        KeyError: ``family`` is not one a header can carry.
        ProxyProtocolBuildError: The addresses are not valid for ``family``.

    """
    if not proxied:
        return ProxyResultLocal(tlv=tlv)
    given = family
    if family is None:
        if _path(source) is not None and _path(dest) is not None:
            family = socket.AF_UNIX
        elif _ip_port(source) and _ip_port(dest):
            family = socket.AF_INET6
        else:
            family = socket.AF_UNSPEC
    if family == socket.AF_UNSPEC:
        return ProxyResultUnknown(tlv=tlv)
    if family == getattr(socket, 'AF_UNIX', object()):
        src_path, dst_path = _path(source), _path(dest)
        return ProxyResultUnix(src_path or '', dst_path or '',
                               protocol=protocol, tlv=tlv)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise KeyError(family)
    src, dst = _ip_port(source), _ip_port(dest)
    if src is None or dst is None:
        raise ProxyProtocolBuildError(
            'IP families need (host, port) addresses')
    (src_ip, sport), (dst_ip, dport) = src, dst
    if src_ip.version == 4 and dst_ip.version == 4 \
            and given != socket.AF_INET6:
        return ProxyResultIPv4((src_ip, sport), (dst_ip, dport),
                               protocol=protocol, tlv=tlv)
    if given == socket.AF_INET:
        raise ProxyProtocolBuildError('AF_INET needs two IPv4 addresses')
    return ProxyResultIPv6((_as_ipv6(src_ip), sport),
                           (_as_ipv6(dst_ip), dport),
                           protocol=protocol, tlv=tlv)
