"""The header the proxy server writes in front of each outbound connection.

:class:`HeaderFactory` turns a connection's socket addresses (and, when the
server terminated TLS, its TLS facts) into header bytes. The common cases,
TCP over IPv4 or IPv6 with at most a UNIQUE_ID and a CRC32C TLV, are packed
directly with :mod:`struct`, which costs about a microsecond; everything else
goes through the codec (:func:`~proxyprotocol.sockaddr.result_from_sockaddrs`
and :func:`~proxyprotocol.header.build_header`), which costs some tens. The
test suite checks that both give the same bytes.

"""

from __future__ import annotations

import os
import socket
from socket import AF_INET, AF_INET6, SOCK_STREAM, inet_pton
from struct import Struct
from typing import Any, Final, Optional

from ..checksum import crc32c as _crc32c
from ..header import build_header
from ..result import ProxyResult
from ..sockaddr import result_from_sockaddrs
from ..tlv import (ProxyProtocolExtTLV, ProxyProtocolSSLTLV,
                   ProxyProtocolTLV, Type)
from ..v2 import V2_SIGNATURE

__all__ = ['HeaderFactory', 'TLSFacts', 'unmap_pair']

_V2_INET: Final = Struct('!12sBBH4s4sHH')
_V2_INET6: Final = Struct('!12sBBH16s16sHH')
_TLV_HEAD: Final = Struct('!BH')
_CRC_TLV: Final = b'\x03\x00\x04'
_CRC_ZERO: Final = _CRC_TLV + b'\x00\x00\x00\x00'
_UNIQUE_ID_SIZE: Final = 16


class TLSFacts:
    """What the server learned from a TLS handshake it terminated.

    Attributes:
        version: e.g. ``'TLSv1.3'``.
        cipher: The OpenSSL cipher name.
        alpn: The protocol chosen by ALPN, if any.
        sni: The server name the client asked for, if any.
        client_cert: Whether the client presented a certificate.
        verified: Whether that certificate was verified.
        cn: The common name of the client certificate.
        sig_alg, key_alg: Of the server's own certificate, e.g.
            ``'RSA-SHA256'`` and ``'RSA2048'`` (spec 2.2.6).

    """

    __slots__ = ('version', 'cipher', 'alpn', 'sni', 'client_cert',
                 'verified', 'cn', 'sig_alg', 'key_alg')

    def __init__(self, *, version: Optional[str] = None,
                 cipher: Optional[str] = None, alpn: Optional[str] = None,
                 sni: Optional[str] = None, client_cert: bool = False,
                 verified: bool = False, cn: Optional[str] = None,
                 sig_alg: Optional[str] = None,
                 key_alg: Optional[str] = None) -> None:
        self.version = version
        self.cipher = cipher
        self.alpn = alpn
        self.sni = sni
        self.client_cert = client_cert
        self.verified = verified
        self.cn = cn
        self.sig_alg = sig_alg
        self.key_alg = key_alg

    def ssl_tlv(self) -> ProxyProtocolSSLTLV:
        """The PP2_TYPE_SSL value for these facts.

        ``verify`` is zero only when the client presented a certificate and
        it was verified (spec 2.2.6), unlike 0.11, which always said so.

        """
        return ProxyProtocolSSLTLV(
            has_ssl=True, has_cert_conn=self.client_cert,
            has_cert_sess=self.client_cert,
            verified=self.client_cert and self.verified,
            version=self.version, cipher=self.cipher, cn=self.cn,
            sig_alg=self.sig_alg, key_alg=self.key_alg)

    def __repr__(self) -> str:
        fields = ', '.join(f'{name}={getattr(self, name)!r}'
                           for name in self.__slots__
                           if getattr(self, name) not in (None, False))
        return f'TLSFacts({fields})'


def unmap_pair(peer: Any, local: Any) -> tuple[Any, Any, int]:
    """``(peer, local, family)`` with IPv4-mapped IPv6 addresses turned back
    into IPv4 when both are mapped (a dual-stack listener's IPv4 clients),
    so that the header says TCP4 as the client really used IPv4."""
    if isinstance(peer, tuple) and len(peer) == 4 \
            and isinstance(local, tuple) and len(local) == 4:
        src, dst = peer[0], local[0]
        if src.startswith('::ffff:') and dst.startswith('::ffff:') \
                and '.' in src and '.' in dst:
            return (src[7:], peer[1]), (dst[7:], local[1]), AF_INET
        return peer, local, AF_INET6
    if isinstance(peer, tuple) and isinstance(local, tuple):
        return peer, local, AF_INET
    return peer, local, socket.AF_UNIX


class HeaderFactory:
    """Writes the header for each connection of one destination.

    Args:
        version: 1 or 2 (None: no header at all).
        unique_id: Add a 16-byte random PP2_TYPE_UNIQUE_ID (v2).
        crc32c: Add a PP2_TYPE_CRC32C checksum (v2).
        ssl, alpn, authority: Add these TLVs (v2) when the server
            terminated TLS itself and the facts exist.

    """

    __slots__ = ('version', 'unique_id', 'crc32c', 'ssl', 'alpn',
                 'authority')

    def __init__(self, version: Optional[int], *, unique_id: bool = False,
                 crc32c: bool = False, ssl: bool = False, alpn: bool = False,
                 authority: bool = False) -> None:
        if version not in (None, 1, 2):
            raise ValueError(f'no PROXY protocol version {version!r}')
        v2 = version == 2
        self.version = version
        self.unique_id = unique_id and v2
        self.crc32c = crc32c and v2
        self.ssl = ssl and v2
        self.alpn = alpn and v2
        self.authority = authority and v2

    def build(self, peer: Any, local: Any, *,
              tls: Optional[TLSFacts] = None,
              forwarded: Optional[ProxyResult] = None,
              dnsbl: Optional[str] = None) -> bytes:
        """The header for a connection from ``peer`` to ``local``.

        Args:
            peer: The client, as ``getpeername()`` gives it.
            local: Where it connected, as ``getsockname()`` gives it.
            tls: The TLS facts, when the server terminated TLS.
            forwarded: The header a trusted proxy in front sent: its
                addresses replace ``peer`` and ``local``, and its TLVs are
                passed on (but for the checksum, which is computed again).
            dnsbl: A DNSBL verdict on the client, sent (v2) in 0.11's
                extension TLV.

        Raises:
            ProxyProtocolBuildError: The addresses cannot be written.

        """
        version = self.version
        if version is None:
            return b''
        if forwarded is None and tls is None and dnsbl is None:
            peer, local, family = unmap_pair(peer, local)
            if family == AF_INET:
                if version == 2:
                    return self._v2(_V2_INET, 0x11, AF_INET, peer, local)
                return (f'PROXY TCP4 {peer[0]} {local[0]} {peer[1]} '
                        f'{local[1]}\r\n').encode('ascii')
            if family == AF_INET6 and version == 2:
                return self._v2(_V2_INET6, 0x21, AF_INET6, peer, local)
        return self._slow(peer, local, tls, forwarded, dnsbl)

    def _v2(self, layout: Struct, fam: int, family: int, peer: Any,
            local: Any) -> bytes:
        src, dst = peer[0], local[0]
        if family == AF_INET6:
            src, dst = src.partition('%')[0], dst.partition('%')[0]
        block = layout.size - 16
        if not (self.unique_id or self.crc32c):
            return layout.pack(V2_SIGNATURE, 0x21, fam, block,
                               inet_pton(family, src), inet_pton(family, dst),
                               peer[1], local[1])
        tlvs = b''
        if self.unique_id:
            tlvs = b'\x05\x00\x10' + os.urandom(_UNIQUE_ID_SIZE)
        if not self.crc32c:
            return layout.pack(V2_SIGNATURE, 0x21, fam, block + len(tlvs),
                               inet_pton(family, src), inet_pton(family, dst),
                               peer[1], local[1]) + tlvs
        header = layout.pack(V2_SIGNATURE, 0x21, fam, block + len(tlvs) + 7,
                             inet_pton(family, src), inet_pton(family, dst),
                             peer[1], local[1]) + tlvs + _CRC_ZERO
        return header[:-4] + _crc32c(header).to_bytes(4, 'big')

    def _slow(self, peer: Any, local: Any, tls: Optional[TLSFacts],
              forwarded: Optional[ProxyResult],
              dnsbl: Optional[str] = None) -> bytes:
        keep: list[tuple[int, bytes]] = []
        if forwarded is not None:
            peer, local = forwarded.peername, forwarded.sockname
            keep = [(t, v) for t, v in forwarded.tlv.entries
                    if t != Type.PP2_TYPE_CRC32C]
        else:
            peer, local, _ = unmap_pair(peer, local)
        tlv = ProxyProtocolTLV()
        if self.version == 2:
            fields: dict[str, Any] = {}
            have = {t for t, _ in keep}
            if self.unique_id and Type.PP2_TYPE_UNIQUE_ID not in have:
                fields['unique_id'] = os.urandom(_UNIQUE_ID_SIZE)
            if tls is not None:
                if self.ssl:
                    fields['ssl'] = tls.ssl_tlv()
                if self.alpn and tls.alpn:
                    fields['alpn'] = tls.alpn.encode('ascii', 'replace')
                if self.authority and tls.sni:
                    fields['authority'] = tls.sni
            if dnsbl is not None:
                fields['ext'] = ProxyProtocolExtTLV(dnsbl=dnsbl)
            if keep or fields:
                tlv = ProxyProtocolTLV(
                    b''.join(_TLV_HEAD.pack(t, len(v)) + v for t, v in keep),
                    **fields)
        result = result_from_sockaddrs(peer, local, protocol=SOCK_STREAM,
                                       tlv=tlv)
        return build_header(result, version=self.version or 2,
                            crc32c=self.crc32c)
