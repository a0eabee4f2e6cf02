"""Describe a real connection as a result, to send it on in a header.

A proxy calls :func:`build_socket_result` (for a socket) or
:func:`build_transport_result` (for an asyncio transport) on the client's
connection and packs the result into the header it sends upstream: the
source is the client, the destination the proxy's own address. The 0.11
API, with one fix: the SSL TLV's ``verified`` flag now says whether the
client's certificate was really verified (0.11 always claimed it was).

"""

from __future__ import annotations

import socket
import ssl
from ipaddress import IPv4Address, IPv6Address
from socket import AddressFamily, SocketKind
from typing import Any, Optional, Union

from .result import (ProxyResult, ProxyResultIPv4, ProxyResultIPv6,
                     ProxyResultUnix, ProxyResultUnknown)
from .tlv import ProxyProtocolExtTLV, ProxyProtocolSSLTLV, ProxyProtocolTLV
from .typing import PeerCert, SockAddr, TransportProtocol

__all__ = ['build_socket_result', 'build_transport_result']

_SSL = Union[ssl.SSLObject, ssl.SSLSocket]


def build_socket_result(sock: socket.socket, *,
                        unique_id: Optional[bytes] = None,
                        dnsbl: Optional[str] = None) -> ProxyResult:
    """The result describing the connection of ``sock``.

    Args:
        sock: A connected socket (an :class:`ssl.SSLSocket` adds the SSL
            TLV).
        unique_id: An identifier to send as the UNIQUE_ID TLV.
        dnsbl: A DNSBL result to send in the 0.11 extension TLV.

    """
    ssl_sock = sock if isinstance(sock, ssl.SSLSocket) else None
    return _build_result(sock, sock.getpeername(), sock.getsockname(),
                         ssl_sock, unique_id, dnsbl)


def build_transport_result(transport: TransportProtocol, *,
                           unique_id: Optional[bytes] = None,
                           dnsbl: Optional[str] = None) -> ProxyResult:
    """The result describing the connection of an asyncio ``transport``
    (or :class:`asyncio.StreamWriter`); its ``ssl_object`` adds the SSL
    TLV.

    Args:
        transport: A connected transport.
        unique_id: An identifier to send as the UNIQUE_ID TLV.
        dnsbl: A DNSBL result to send in the 0.11 extension TLV.

    """
    return _build_result(transport.get_extra_info('socket'),
                         transport.get_extra_info('peername'),
                         transport.get_extra_info('sockname'),
                         transport.get_extra_info('ssl_object'),
                         unique_id, dnsbl)


def _build_result(sock: Any, peername: SockAddr, sockname: SockAddr,
                  ssl_obj: Optional[_SSL], unique_id: Optional[bytes],
                  dnsbl: Optional[str]) -> ProxyResult:
    family = AddressFamily(sock.family)
    protocol = SocketKind(sock.type)
    if family == socket.AF_INET:
        assert isinstance(peername, tuple) and isinstance(sockname, tuple)
        return ProxyResultIPv4(
            (IPv4Address(peername[0]), peername[1]),
            (IPv4Address(sockname[0]), sockname[1]),
            protocol=protocol, tlv=_build_tlv(ssl_obj, unique_id, dnsbl))
    if family == socket.AF_INET6:
        assert isinstance(peername, tuple) and isinstance(sockname, tuple)
        return ProxyResultIPv6(
            (IPv6Address(peername[0].split('%', 1)[0]), peername[1]),
            (IPv6Address(sockname[0].split('%', 1)[0]), sockname[1]),
            protocol=protocol, tlv=_build_tlv(ssl_obj, unique_id, dnsbl))
    if family == getattr(socket, 'AF_UNIX', None):
        return ProxyResultUnix(
            _path(peername), _path(sockname), protocol=protocol,
            tlv=_build_tlv(ssl_obj, unique_id, dnsbl))
    return ProxyResultUnknown()


def _path(address: Any) -> str:
    if isinstance(address, (bytes, bytearray)):
        # Linux gives abstract-namespace addresses as bytes.
        return bytes(address).decode('utf-8', 'surrogateescape')
    return address if isinstance(address, str) else ''


def _is_verified(ssl_obj: _SSL, der: Optional[bytes]) -> bool:
    # A certificate was received and the context asked OpenSSL to verify
    # it; a handshake only completes with such a certificate if it passed.
    if der is None:
        return False
    context = getattr(ssl_obj, 'context', None)
    mode = getattr(context, 'verify_mode', ssl.CERT_NONE)
    return mode in (ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED)


def _build_tlv(ssl_obj: Optional[_SSL], unique_id: Optional[bytes],
               dnsbl: Optional[str]) -> ProxyProtocolTLV:
    ssl_tlv: Optional[ProxyProtocolSSLTLV] = None
    ext_tlv: Optional[ProxyProtocolExtTLV] = None
    if dnsbl is not None:
        ext_tlv = ProxyProtocolExtTLV(dnsbl=dnsbl)
    if ssl_obj is not None:
        cipher, version, secret_bits = ssl_obj.cipher() or (None, None, None)
        peercert: Optional[PeerCert] = ssl_obj.getpeercert()
        der: Optional[bytes] = ssl_obj.getpeercert(binary_form=True)
        ssl_tlv = ProxyProtocolSSLTLV(
            has_ssl=True, verified=_is_verified(ssl_obj, der),
            has_cert_conn=der is not None or bool(peercert),
            cipher=cipher, version=version)
        ext_tlv = ProxyProtocolExtTLV(
            init=ext_tlv, compression=ssl_obj.compression(),
            secret_bits=secret_bits, peercert=peercert or None)
    return ProxyProtocolTLV(unique_id=unique_id, ssl=ssl_tlv, ext=ext_tlv)
