"""Type-length-value vectors of the v2 header (spec section 2.2).

A :class:`TLV` is an immutable, ordered sequence of ``(type, value)`` entries
that also reads as a mapping from type to value (the last value of a repeated
type wins, as in 0.11). Entries keep the exact bytes and order they arrived in,
duplicates included; :attr:`TLV.entries` and :meth:`TLV.get_all` show them.

:class:`ProxyProtocolTLV` adds typed accessors and keyword construction for
every registered type, the cloud providers' types (AWS, Azure, GCP), and the
CRC32C checksum. :class:`ProxyProtocolSSLTLV` is the value of PP2_TYPE_SSL and
:class:`ProxyProtocolExtTLV` is the non-standard extension carried in a
PP2_TYPE_NOOP value by 0.11.

"""

from __future__ import annotations

import json
import zlib
from collections.abc import Hashable, Iterable, Iterator, Mapping
from enum import IntEnum, IntFlag
from struct import Struct
from typing import Any, ClassVar, Final, Optional, TypeVar, Union

from .checksum import crc32c as _crc32c
from .errors import ProxyProtocolBuildError, ProxyProtocolSyntaxError

__all__ = ['Type', 'SSLClient', 'ExtType', 'AWSSubtype', 'AzureSubtype',
           'TLV', 'ProxyProtocolTLV', 'ProxyProtocolSSLTLV',
           'ProxyProtocolExtTLV', 'MAX_AUTHORITY_LENGTH',
           'MAX_UNIQUE_ID_LENGTH']

_TLVT = TypeVar('_TLVT', bound='TLV')
_HEAD: Final = Struct('!BH')
_U32: Final = Struct('!L')
_U64: Final = Struct('!Q')
_U16: Final = Struct('!H')
_SSL_HEAD: Final = Struct('!BL')

#: The most bytes PP2_TYPE_AUTHORITY may hold (a host name, RFC 1035).
MAX_AUTHORITY_LENGTH: Final = 255

#: The most bytes PP2_TYPE_UNIQUE_ID may hold (spec section 2.2.5).
MAX_UNIQUE_ID_LENGTH: Final = 128


class Type(IntEnum):
    """The registered TLV types, sub-types and reserved ranges."""

    PP2_TYPE_ALPN = 0x01
    PP2_TYPE_AUTHORITY = 0x02
    PP2_TYPE_CRC32C = 0x03
    PP2_TYPE_NOOP = 0x04
    PP2_TYPE_UNIQUE_ID = 0x05
    PP2_TYPE_SSL = 0x20
    PP2_SUBTYPE_SSL_VERSION = 0x21
    PP2_SUBTYPE_SSL_CN = 0x22
    PP2_SUBTYPE_SSL_CIPHER = 0x23
    PP2_SUBTYPE_SSL_SIG_ALG = 0x24
    PP2_SUBTYPE_SSL_KEY_ALG = 0x25
    PP2_SUBTYPE_SSL_GROUP = 0x26
    PP2_SUBTYPE_SSL_SIG_SCHEME = 0x27
    PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28
    PP2_TYPE_NETNS = 0x30
    PP2_TYPE_MIN_CUSTOM = 0xE0
    PP2_TYPE_MAX_CUSTOM = 0xEF
    PP2_TYPE_MIN_EXPERIMENT = 0xF0
    PP2_TYPE_MAX_EXPERIMENT = 0xF7
    PP2_TYPE_MIN_FUTURE = 0xF8
    PP2_TYPE_MAX_FUTURE = 0xFF
    #: Google Cloud Private Service Connect: uint64 connection id.
    PP2_TYPE_GCP = 0xE0
    #: AWS (NLB, VPC endpoint services): a sub-type byte, then the value.
    PP2_TYPE_AWS = 0xEA
    #: Azure Private Link: a sub-type byte, then the value.
    PP2_TYPE_AZURE = 0xEE


class AWSSubtype(IntEnum):
    """Sub-types of :attr:`Type.PP2_TYPE_AWS`."""

    PP2_SUBTYPE_AWS_VPCE_ID = 0x01


class AzureSubtype(IntEnum):
    """Sub-types of :attr:`Type.PP2_TYPE_AZURE`."""

    PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID = 0x01


class SSLClient(IntFlag):
    """The ``client`` bit field of the PP2_TYPE_SSL value."""

    PP2_CLIENT_SSL = 0x01
    PP2_CLIENT_CERT_CONN = 0x02
    PP2_CLIENT_CERT_SESS = 0x04


class ExtType(IntEnum):
    """Types inside the non-standard 0.11 extension TLV."""

    PP2_TYPE_EXT_COMPRESSION = 0x01
    PP2_TYPE_EXT_SECRET_BITS = 0x02
    PP2_TYPE_EXT_PEERCERT = 0x03
    PP2_TYPE_EXT_DNSBL = 0x04


Entry = tuple[int, bytes]


def _scan_lenient(data: Union[bytes, bytearray, memoryview]) -> list[Entry]:
    # The 0.11 constructor's reading: stop when fewer than 3 bytes remain and
    # keep a value cut short by the end of the data.
    data = bytes(data)
    entries: list[Entry] = []
    pos, end = 0, len(data)
    while end - pos >= 3:
        tlv_type, length = _HEAD.unpack_from(data, pos)
        pos += 3
        entries.append((tlv_type, data[pos:pos + length]))
        pos += length
    return entries


def _serialize(entries: Iterable[Entry]) -> bytes:
    pack = _HEAD.pack
    return b''.join(pack(t, len(v)) + v for t, v in entries)


def _merge(entries: list[Entry], updates: Iterable[tuple[int, Optional[bytes]]]
           ) -> list[Entry]:
    # Apply overrides (None removes), then order by type as 0.11 did for
    # anything built from keywords or mappings.
    merged: dict[int, list[bytes]] = {}
    for tlv_type, value in entries:
        merged.setdefault(tlv_type, []).append(value)
    for tlv_type, new in updates:
        if new is None:
            merged.pop(tlv_type, None)
        else:
            merged[tlv_type] = [new]
    return [(t, v) for t in sorted(merged) if 0 <= t <= 0xFF
            for v in merged[t]]


def _check_value(tlv_type: int, value: bytes) -> None:
    if len(value) > 0xFFFF:
        raise ProxyProtocolBuildError(
            f'TLV 0x{tlv_type:02x} value is {len(value)} bytes, '
            'more than 65535')


class TLV(Mapping[int, bytes], Hashable):
    """An immutable, ordered list of type-length-value entries.

    Args:
        data: Serialized entries to read, leniently (as 0.11 did).
        init: Entries that override those read from ``data``.

    """

    __slots__ = ('_list', '_map', '_raw')

    _list: Optional[tuple[Entry, ...]]
    _map: Optional[dict[int, bytes]]
    _raw: Optional[bytes]

    def __init__(self, data: Union[bytes, bytearray, memoryview] = b'',
                 init: Optional[Mapping[int, bytes]] = None) -> None:
        self._set(_scan_lenient(data), init, (), data)

    def _set(self, entries: list[Entry], init: Optional[Mapping[int, bytes]],
             updates: Iterable[tuple[int, Optional[bytes]]],
             data: Union[bytes, bytearray, memoryview]) -> None:
        updates = list(updates)
        if init is not None or updates:
            init_items: list[tuple[int, Optional[bytes]]] = []
            if init is not None:
                init_items = [(int(t), bytes(v)) for t, v in init.items()]
            entries = _merge(entries, init_items + updates)
            self._raw = None
        else:
            # Read leniently: serialize again (in the same order) on demand.
            self._raw = None
        for tlv_type, value in entries:
            _check_value(tlv_type, value)
        self._list = tuple(entries)
        self._map = None

    @classmethod
    def from_entries(cls: type[_TLVT], entries: Iterable[tuple[int, bytes]]
                     ) -> _TLVT:
        """Build from ``(type, value)`` pairs, kept in the order given."""
        items = [(int(t), bytes(v)) for t, v in entries]
        for tlv_type, value in items:
            if not 0 <= tlv_type <= 0xFF:
                raise ProxyProtocolBuildError(
                    f'TLV type {tlv_type} is not one byte')
            _check_value(tlv_type, value)
        return cls._from_parsed(tuple(items), None)

    @classmethod
    def _from_parsed(cls: type[_TLVT], entries: Optional[tuple[Entry, ...]],
                     raw: Optional[bytes]) -> _TLVT:
        # Either may be None: entries are then read from the (validated)
        # raw bytes on first use, and raw bytes serialized from entries.
        self = cls.__new__(cls)
        self._list = entries
        self._map = None
        self._raw = raw
        return self

    @property
    def _entries(self) -> tuple[Entry, ...]:
        entries = self._list
        if entries is None:
            entries = self._list = tuple(_scan_lenient(self._raw or b''))
        return entries

    @property
    def entries(self) -> tuple[tuple[int, bytes], ...]:
        """Every entry in order, repeated types included."""
        return self._entries

    def get_all(self, tlv_type: int) -> list[bytes]:
        """Every value of ``tlv_type``, in order."""
        return [v for t, v in self._entries if t == tlv_type]

    def _mapping(self) -> dict[int, bytes]:
        mapping = self._map
        if mapping is None:
            mapping = self._map = dict(self._entries)
        return mapping

    def __getitem__(self, tlv_type: int) -> bytes:
        return self._mapping()[tlv_type]

    def get(self, tlv_type: int, default: Any = None) -> Any:
        return self._mapping().get(tlv_type, default)

    def __contains__(self, tlv_type: object) -> bool:
        return tlv_type in self._mapping()

    def __iter__(self) -> Iterator[int]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __bytes__(self) -> bytes:
        raw = self._raw
        if raw is None:
            raw = self._raw = _serialize(self._entries)
        return raw

    @property
    def size(self) -> int:
        """The length of :func:`bytes` of this TLV."""
        return len(bytes(self))

    def _key(self) -> tuple[Any, ...]:
        return tuple(sorted(self._entries))

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TLV):
            if isinstance(other, type(self)) or isinstance(self, type(other)):
                return type(self)._key is type(other)._key \
                    and self._key() == other._key()
            return False
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        if not self._entries:
            return f'{type(self).__name__}()'
        return f'{type(self).__name__}({bytes(self)!r})'


def _text(value: Optional[bytes], encoding: str = 'ascii') -> Optional[str]:
    if value is None:
        return None
    return value.decode(encoding, 'replace' if encoding == 'utf-8'
                        else 'backslashreplace')


class ProxyProtocolSSLTLV(TLV):
    """The PP2_TYPE_SSL value: client flags, verify result and sub-TLVs.

    Sub-types 0x21-0x28 (spec section 2.2.6) have typed accessors and
    keywords. A keyword of ``None`` leaves the value read from ``data``.

    """

    __slots__ = ('_client', '_verify')

    _client: int
    _verify: int

    def __init__(self, data: Union[bytes, bytearray, memoryview] = b'',
                 init: Optional[Mapping[int, bytes]] = None, *,
                 has_ssl: Optional[bool] = None,
                 has_cert_conn: Optional[bool] = None,
                 has_cert_sess: Optional[bool] = None,
                 verified: Optional[bool] = None,
                 version: Optional[str] = None,
                 cn: Optional[str] = None,
                 cipher: Optional[str] = None,
                 sig_alg: Optional[str] = None,
                 key_alg: Optional[str] = None,
                 group: Optional[str] = None,
                 sig_scheme: Optional[str] = None,
                 client_cert: Optional[bytes] = None,
                 verify: Optional[int] = None) -> None:
        data = bytes(data)
        client, verify_value, sub = 0, 1, b''
        if len(data) >= 5:
            client, verify_value = _SSL_HEAD.unpack_from(data, 0)
            sub = data[5:]
        flags = ((has_ssl, SSLClient.PP2_CLIENT_SSL),
                 (has_cert_conn, SSLClient.PP2_CLIENT_CERT_CONN),
                 (has_cert_sess, SSLClient.PP2_CLIENT_CERT_SESS))
        for wanted, bit in flags:
            if wanted is True:
                client |= bit
            elif wanted is False:
                client &= ~bit
        if verified is not None:
            verify_value = 0 if verified else 1
        if verify is not None:
            verify_value = verify
        self._client = client
        self._verify = verify_value
        updates = [(t, _encode_str(v, enc, t)) for t, v, enc in (
            (Type.PP2_SUBTYPE_SSL_VERSION, version, 'ascii'),
            (Type.PP2_SUBTYPE_SSL_CN, cn, 'utf-8'),
            (Type.PP2_SUBTYPE_SSL_CIPHER, cipher, 'ascii'),
            (Type.PP2_SUBTYPE_SSL_SIG_ALG, sig_alg, 'ascii'),
            (Type.PP2_SUBTYPE_SSL_KEY_ALG, key_alg, 'ascii'),
            (Type.PP2_SUBTYPE_SSL_GROUP, group, 'ascii'),
            (Type.PP2_SUBTYPE_SSL_SIG_SCHEME, sig_scheme, 'ascii'),
        ) if v is not None]
        if client_cert is not None:
            updates.append((Type.PP2_SUBTYPE_SSL_CLIENT_CERT,
                            bytes(client_cert)))
        self._set(_scan_lenient(sub), init, updates, sub)

    @property
    def client(self) -> int:
        """The :class:`SSLClient` bit field."""
        return self._client

    @property
    def verify(self) -> int:
        """Zero if the client certificate was verified, else non-zero."""
        return self._verify

    @property
    def has_ssl(self) -> bool:
        """The client connected over SSL/TLS."""
        return bool(self._client & SSLClient.PP2_CLIENT_SSL)

    @property
    def has_cert_conn(self) -> bool:
        """The client sent a certificate on this connection."""
        return bool(self._client & SSLClient.PP2_CLIENT_CERT_CONN)

    @property
    def has_cert_sess(self) -> bool:
        """The client sent a certificate at least once in this session."""
        return bool(self._client & SSLClient.PP2_CLIENT_CERT_SESS)

    @property
    def verified(self) -> bool:
        """The client certificate was verified (``verify == 0``)."""
        return self._verify == 0

    @property
    def version(self) -> Optional[str]:
        """The TLS version, e.g. ``'TLSv1.3'``."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_VERSION))

    @property
    def cn(self) -> Optional[str]:
        """The Common Name of the client certificate's subject."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_CN), 'utf-8')

    @property
    def cipher(self) -> Optional[str]:
        """The cipher name, e.g. ``'ECDHE-RSA-AES128-GCM-SHA256'``."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_CIPHER))

    @property
    def sig_alg(self) -> Optional[str]:
        """The algorithm that signed the frontend's certificate."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_SIG_ALG))

    @property
    def key_alg(self) -> Optional[str]:
        """The algorithm of the frontend certificate's key."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_KEY_ALG))

    @property
    def group(self) -> Optional[str]:
        """The key exchange group, e.g. ``'secp256r1'``."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_GROUP))

    @property
    def sig_scheme(self) -> Optional[str]:
        """The signature scheme, e.g. ``'rsa_pss_rsae_sha256'``."""
        return _text(self.get(Type.PP2_SUBTYPE_SSL_SIG_SCHEME))

    @property
    def client_cert(self) -> Optional[bytes]:
        """The client certificate, DER encoded."""
        value: Optional[bytes] = self.get(Type.PP2_SUBTYPE_SSL_CLIENT_CERT)
        return value

    def __bytes__(self) -> bytes:
        return _SSL_HEAD.pack(self._client, self._verify) + super().__bytes__()

    def __bool__(self) -> bool:
        return bool(self._entries) or self._client != 0 or self.verified

    def _key(self) -> tuple[Any, ...]:
        return (self._client, self._verify, tuple(sorted(self._entries)))

    def __repr__(self) -> str:
        return f'{type(self).__name__}({bytes(self)!r})'


class ProxyProtocolExtTLV(TLV):
    """The 0.11 extension TLV, carried inside a PP2_TYPE_NOOP value.

    It is recognized by :attr:`MAGIC_PREFIX`; any other NOOP value reads as
    an empty extension.

    """

    __slots__ = ()

    #: The bytes that mark a NOOP value as carrying this extension.
    MAGIC_PREFIX: ClassVar[bytes] = b'\x88\x1b\x79\xc1\xce\x96\x85\xb0'

    def __init__(self, data: Union[bytes, bytearray, memoryview] = b'',
                 init: Optional[Mapping[int, bytes]] = None, *,
                 compression: Optional[str] = None,
                 secret_bits: Optional[int] = None,
                 peercert: Optional[Mapping[str, Any]] = None,
                 dnsbl: Optional[str] = None) -> None:
        data = bytes(data)
        prefix = self.MAGIC_PREFIX
        body = data[len(prefix):] if data.startswith(prefix) else b''
        updates: list[tuple[int, Optional[bytes]]] = []
        if compression is not None:
            updates.append((ExtType.PP2_TYPE_EXT_COMPRESSION,
                            compression.encode('ascii')))
        if secret_bits is not None:
            updates.append((ExtType.PP2_TYPE_EXT_SECRET_BITS,
                            _U16.pack(secret_bits)))
        if peercert is not None:
            updates.append((ExtType.PP2_TYPE_EXT_PEERCERT, zlib.compress(
                json.dumps(peercert).encode('ascii'))))
        if dnsbl is not None:
            updates.append((ExtType.PP2_TYPE_EXT_DNSBL, dnsbl.encode('utf-8')))
        self._set(_scan_lenient(body), init, updates, body)

    @property
    def compression(self) -> Optional[str]:
        """The TLS compression method, if any."""
        return _text(self.get(ExtType.PP2_TYPE_EXT_COMPRESSION))

    @property
    def secret_bits(self) -> Optional[int]:
        """The cipher's secret bits."""
        value = self.get(ExtType.PP2_TYPE_EXT_SECRET_BITS)
        if value is None or len(value) != 2:
            return None
        bits: int = _U16.unpack(value)[0]
        return bits

    @property
    def peercert(self) -> Optional[dict[str, Any]]:
        """The client certificate as :meth:`ssl.SSLSocket.getpeercert`."""
        value = self.get(ExtType.PP2_TYPE_EXT_PEERCERT)
        if value is None:
            return None
        try:
            cert: dict[str, Any] = json.loads(zlib.decompress(value))
        except (zlib.error, ValueError):
            return None
        return cert

    @property
    def dnsbl(self) -> Optional[str]:
        """The DNSBL result the proxy attached."""
        return _text(self.get(ExtType.PP2_TYPE_EXT_DNSBL), 'utf-8')

    def __bytes__(self) -> bytes:
        return self.MAGIC_PREFIX + super().__bytes__()

    def __bool__(self) -> bool:
        return bool(self._entries)


def _encode_str(value: str, encoding: str, tlv_type: int) -> bytes:
    try:
        return value.encode(encoding)
    except UnicodeEncodeError as exc:
        raise ProxyProtocolBuildError(
            f'TLV 0x{tlv_type:02x} must be {encoding.upper()} text') from exc


_EMPTY_SSL: Final = ProxyProtocolSSLTLV()
_EMPTY_EXT: Final = ProxyProtocolExtTLV()


class ProxyProtocolTLV(TLV):
    """All the TLVs of one v2 header, with typed access to each known type.

    Keyword arguments build a TLV from typed values; they override entries of
    ``init`` and ``data``. With ``auto_crc32c=True`` (and no ``crc32c``
    keyword) the checksum is left to :meth:`with_checksum`, which the v2
    builder calls once the whole header is known.

    """

    __slots__ = ('_auto_crc32c',)

    _auto_crc32c: bool

    def __init__(self, data: Union[bytes, bytearray, memoryview] = b'',
                 init: Optional[Mapping[int, bytes]] = None, *,
                 alpn: Optional[bytes] = None,
                 authority: Optional[str] = None,
                 crc32c: Optional[int] = None,
                 unique_id: Optional[bytes] = None,
                 ssl: Optional[ProxyProtocolSSLTLV] = None,
                 netns: Optional[str] = None,
                 ext: Optional[ProxyProtocolExtTLV] = None,
                 aws_vpce_id: Optional[str] = None,
                 azure_link_id: Optional[int] = None,
                 gcp_psc_connection_id: Optional[int] = None,
                 auto_crc32c: bool = False) -> None:
        updates: list[tuple[int, Optional[bytes]]] = []
        if alpn is not None:
            updates.append((Type.PP2_TYPE_ALPN, bytes(alpn)))
        if authority is not None:
            value = _encode_str(authority, 'utf-8', Type.PP2_TYPE_AUTHORITY)
            if len(value) > MAX_AUTHORITY_LENGTH:
                raise ProxyProtocolBuildError(
                    f'authority is {len(value)} bytes, more than '
                    f'{MAX_AUTHORITY_LENGTH}')
            updates.append((Type.PP2_TYPE_AUTHORITY, value))
        if crc32c is not None:
            updates.append((Type.PP2_TYPE_CRC32C, _U32.pack(crc32c)))
        if unique_id is not None:
            unique_id = bytes(unique_id)
            if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
                raise ProxyProtocolBuildError(
                    f'unique_id is {len(unique_id)} bytes, more than '
                    f'{MAX_UNIQUE_ID_LENGTH}')
            updates.append((Type.PP2_TYPE_UNIQUE_ID, unique_id))
        if ssl:
            updates.append((Type.PP2_TYPE_SSL, bytes(ssl)))
        if netns is not None:
            updates.append((Type.PP2_TYPE_NETNS,
                            _encode_str(netns, 'ascii', Type.PP2_TYPE_NETNS)))
        if ext:
            updates.append((Type.PP2_TYPE_NOOP, bytes(ext)))
        if aws_vpce_id is not None:
            updates.append((Type.PP2_TYPE_AWS, bytes(
                [AWSSubtype.PP2_SUBTYPE_AWS_VPCE_ID]) + _encode_str(
                    aws_vpce_id, 'ascii', Type.PP2_TYPE_AWS)))
        if azure_link_id is not None:
            updates.append((Type.PP2_TYPE_AZURE, bytes(
                [AzureSubtype.PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID])
                + _int_bytes(azure_link_id, 4, 'little')))
        if gcp_psc_connection_id is not None:
            updates.append((Type.PP2_TYPE_GCP,
                            _int_bytes(gcp_psc_connection_id, 8, 'big')))
        self._auto_crc32c = auto_crc32c and crc32c is None
        if self._auto_crc32c:
            updates.append((Type.PP2_TYPE_CRC32C, None))
        self._set(_scan_lenient(data), init, updates, data)

    @classmethod
    def _from_parsed(cls: type[_TLVT], entries: Optional[tuple[Entry, ...]],
                     raw: Optional[bytes]) -> _TLVT:
        self = cls.__new__(cls)
        self._list = entries
        self._map = None
        self._raw = raw
        self._auto_crc32c = False  # type: ignore[attr-defined]
        return self

    @property
    def auto_crc32c(self) -> bool:
        """Whether a CRC32C is still to be added by :meth:`with_checksum`."""
        return self._auto_crc32c

    @property
    def alpn(self) -> Optional[bytes]:
        """PP2_TYPE_ALPN: the negotiated application protocol."""
        value: Optional[bytes] = self.get(Type.PP2_TYPE_ALPN)
        return value

    @property
    def authority(self) -> Optional[str]:
        """PP2_TYPE_AUTHORITY: the host name the client asked for (SNI)."""
        return _text(self.get(Type.PP2_TYPE_AUTHORITY), 'utf-8')

    @property
    def crc32c(self) -> Optional[int]:
        """PP2_TYPE_CRC32C: the checksum value carried, if any."""
        value = self.get(Type.PP2_TYPE_CRC32C)
        if value is None or len(value) != 4:
            return None
        crc: int = _U32.unpack(value)[0]
        return crc

    @property
    def unique_id(self) -> bytes:
        """PP2_TYPE_UNIQUE_ID, or ``b''`` when absent (as in 0.11)."""
        value: bytes = self.get(Type.PP2_TYPE_UNIQUE_ID, b'')
        return value

    @property
    def ssl(self) -> ProxyProtocolSSLTLV:
        """PP2_TYPE_SSL, or an empty one when absent."""
        value = self.get(Type.PP2_TYPE_SSL)
        if value is None:
            return _EMPTY_SSL
        return ProxyProtocolSSLTLV(value)

    @property
    def netns(self) -> Optional[str]:
        """PP2_TYPE_NETNS: the network namespace name."""
        return _text(self.get(Type.PP2_TYPE_NETNS))

    @property
    def noop(self) -> Optional[bytes]:
        """PP2_TYPE_NOOP: the padding value, if any."""
        value: Optional[bytes] = self.get(Type.PP2_TYPE_NOOP)
        return value

    @property
    def ext(self) -> ProxyProtocolExtTLV:
        """The 0.11 extension TLV, or an empty one."""
        value = self.get(Type.PP2_TYPE_NOOP)
        if value is None:
            return _EMPTY_EXT
        return ProxyProtocolExtTLV(value)

    @property
    def aws_vpce_id(self) -> Optional[str]:
        """AWS: the VPC endpoint id (type 0xEA, sub-type 0x01)."""
        value = self._subtyped(Type.PP2_TYPE_AWS,
                               AWSSubtype.PP2_SUBTYPE_AWS_VPCE_ID)
        return _text(value)

    @property
    def azure_link_id(self) -> Optional[int]:
        """Azure: the Private Link id (type 0xEE, sub-type 0x01)."""
        value = self._subtyped(
            Type.PP2_TYPE_AZURE,
            AzureSubtype.PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID)
        if value is None or len(value) != 4:
            return None
        return int.from_bytes(value, 'little')

    @property
    def gcp_psc_connection_id(self) -> Optional[int]:
        """GCP: the Private Service Connect connection id (type 0xE0)."""
        value = self.get(Type.PP2_TYPE_GCP)
        if value is None or len(value) != 8:
            return None
        return int.from_bytes(value, 'big')

    def _subtyped(self, tlv_type: int, subtype: int) -> Optional[bytes]:
        for entry_type, value in self._entries:
            if entry_type == tlv_type and value[:1] == bytes([subtype]):
                return value[1:]
        return None

    def __bytes__(self) -> bytes:
        if self._auto_crc32c:
            raise ValueError('with_checksum() must be called first')
        return super().__bytes__()

    @property
    def size(self) -> int:
        base = len(super().__bytes__())
        return base + 7 if self._auto_crc32c else base

    def _serialize_zeroed(self) -> tuple[bytes, int]:
        """The serialized TLVs with the (first) CRC32C value zeroed."""
        raw = super().__bytes__()
        pos = 0
        for tlv_type, value in self._entries:
            if tlv_type == Type.PP2_TYPE_CRC32C:
                start = pos + 3
                end = start + len(value)
                return raw[:start] + bytes(len(value)) + raw[end:], start
            pos += 3 + len(value)
        return raw, -1

    def with_checksum(self, *before: bytes) -> ProxyProtocolTLV:
        """Return a copy whose CRC32C covers ``before`` and these TLVs.

        ``before`` is the header and address block that precede the TLVs.
        Without ``auto_crc32c`` this TLV is returned unchanged.

        """
        if not self._auto_crc32c:
            return self
        entries = _merge(list(self._entries),
                         [(Type.PP2_TYPE_CRC32C, bytes(4))])
        zeroed = _serialize(entries)
        crc = _crc32c(zeroed, _crc32c(b''.join(before)))
        final = [(t, _U32.pack(crc) if t == Type.PP2_TYPE_CRC32C else v)
                 for t, v in entries]
        return ProxyProtocolTLV._from_parsed(tuple(final), None)

    def verify_checksum(self, *before: bytes) -> bool:
        """Check the CRC32C TLV against ``before`` and these exact bytes.

        True when there is no CRC32C TLV.

        """
        expected = self.crc32c
        if expected is None:
            return Type.PP2_TYPE_CRC32C not in self
        zeroed, _ = self._serialize_zeroed()
        return _crc32c(zeroed, _crc32c(b''.join(before))) == expected

    def __repr__(self) -> str:
        if self._auto_crc32c:
            inner = super().__bytes__()
            return f'{type(self).__name__}({inner!r}, auto_crc32c=True)'
        return super().__repr__()


def _int_bytes(value: int, size: int, order: Any) -> bytes:
    try:
        return int(value).to_bytes(size, order)
    except OverflowError as exc:
        raise ProxyProtocolBuildError(
            f'{value} does not fit in {size} bytes') from exc


# Checks of known types applied by the strict reader of a received header.
_SSL_ASCII: Final = frozenset({
    Type.PP2_SUBTYPE_SSL_VERSION, Type.PP2_SUBTYPE_SSL_CIPHER,
    Type.PP2_SUBTYPE_SSL_SIG_ALG, Type.PP2_SUBTYPE_SSL_KEY_ALG,
    Type.PP2_SUBTYPE_SSL_GROUP, Type.PP2_SUBTYPE_SSL_SIG_SCHEME})
_NAMES: Final = {t.value: t.name.lower().replace('pp2_type_', '')
                 .replace('pp2_subtype_', '') for t in Type}
_NAMES[0xE0] = 'gcp'


def tlv_field(tlv_type: int) -> str:
    """The name errors use for a TLV type, e.g. ``'v2.tlv.authority'``."""
    name = _NAMES.get(tlv_type, f'0x{tlv_type:02x}')
    return f'v2.tlv.{name}'


def _scan_ssl(data: bytes, start: int, end: int) -> None:
    # The SSL value: client (1 byte), verify (4 bytes), then sub-TLVs, each
    # bounded by the SSL TLV itself (spec section 2.2.6).
    if end - start < 5:
        raise ProxyProtocolSyntaxError(
            f'SSL TLV is {end - start} bytes, shorter than its 5-byte '
            'client and verify fields', field='v2.tlv.ssl', offset=start - 3)
    all_ascii = data[start:end].isascii()
    pos = start + 5
    while pos < end:
        if end - pos < 3:
            raise ProxyProtocolSyntaxError(
                'stray bytes after the last SSL sub-TLV',
                field='v2.tlv.ssl', offset=pos)
        sub_type = data[pos]
        vstart = pos + 3
        pos = vstart + ((data[pos + 1] << 8) | data[pos + 2])
        if pos > end:
            raise ProxyProtocolSyntaxError(
                f'SSL sub-TLV 0x{sub_type:02x} runs past the end of the SSL '
                'TLV', field=tlv_field(sub_type), offset=vstart - 3)
        if not all_ascii:
            if sub_type in _SSL_ASCII:
                if not data[vstart:pos].isascii():
                    raise ProxyProtocolSyntaxError(
                        'SSL sub-TLV must be US-ASCII text',
                        field=tlv_field(sub_type), offset=vstart)
            elif sub_type == 0x22:
                _check_utf8(data[vstart:pos], sub_type, vstart)


def _check_utf8(value: bytes, tlv_type: int, offset: int) -> None:
    try:
        value.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise ProxyProtocolSyntaxError(
            'TLV must be UTF-8 text', field=tlv_field(tlv_type),
            offset=offset + exc.start) from None


def _check_known(tlv_type: int, data: bytes, vstart: int, vend: int) -> None:
    # The rules of the registered types that a receiver can check.
    length = vend - vstart
    if tlv_type == 0x02:
        if length > MAX_AUTHORITY_LENGTH:
            raise ProxyProtocolSyntaxError(
                f'AUTHORITY TLV is {length} bytes, more than '
                f'{MAX_AUTHORITY_LENGTH}', field='v2.tlv.authority',
                offset=vstart - 3)
        value = data[vstart:vend]
        if not value.isascii():
            _check_utf8(value, tlv_type, vstart)
    elif tlv_type == 0x05:
        if length > MAX_UNIQUE_ID_LENGTH:
            raise ProxyProtocolSyntaxError(
                f'UNIQUE_ID TLV is {length} bytes, more than '
                f'{MAX_UNIQUE_ID_LENGTH}', field='v2.tlv.unique_id',
                offset=vstart - 3)
    elif not data[vstart:vend].isascii():  # 0x30, NETNS
        raise ProxyProtocolSyntaxError(
            'TLV must be US-ASCII text', field=tlv_field(tlv_type),
            offset=vstart)


_CHECKED: Final = frozenset({0x02, 0x03, 0x05, 0x20, 0x30})


def _check_crc32c(length: int, crc_at: int, vstart: int) -> None:
    if length != 4:
        raise ProxyProtocolSyntaxError(
            f'CRC32C TLV is {length} bytes, not 4', field='v2.tlv.crc32c',
            offset=vstart - 3)
    if crc_at >= 0:
        raise ProxyProtocolSyntaxError(
            'more than one CRC32C TLV', field='v2.tlv.crc32c',
            offset=vstart - 3)


def scan_tlvs(data: bytes, pos: int, end: int
              ) -> tuple[ProxyProtocolTLV, int]:
    """Read the TLV block ``data[pos:end]`` of a received header, strictly.

    Returns the TLVs and the offset of the CRC32C value in ``data`` (or -1).
    Raises :class:`ProxyProtocolSyntaxError` naming the TLV at fault, with
    offsets counted from the start of ``data``.

    """
    crc_at = -1
    start = pos
    checked = _CHECKED
    try:
        while pos < end:
            tlv_type = data[pos]
            vstart = pos + 3
            pos = vstart + ((data[pos + 1] << 8) | data[pos + 2])
            if pos > end:
                if vstart > end:
                    raise IndexError
                raise ProxyProtocolSyntaxError(
                    f'TLV length {pos - vstart} runs past the end of the '
                    'header', field=tlv_field(tlv_type), offset=vstart - 3)
            if tlv_type in checked:
                if tlv_type == 0x03:
                    if crc_at >= 0 or pos - vstart != 4:
                        _check_crc32c(pos - vstart, crc_at, vstart)
                    crc_at = vstart
                elif tlv_type == 0x20:
                    _scan_ssl(data, vstart, pos)
                elif tlv_type == 0x02:
                    if pos - vstart > MAX_AUTHORITY_LENGTH \
                            or not data[vstart:pos].isascii():
                        _check_known(tlv_type, data, vstart, pos)
                else:
                    _check_known(tlv_type, data, vstart, pos)
    except IndexError:
        pos = vstart - 3
        raise ProxyProtocolSyntaxError(
            f'{end - pos} stray bytes after the last TLV', field='v2.tlv',
            offset=pos) from None
    return _new_parsed_tlv(None, data[start:end]), crc_at


#: The TLV of a header that carries none.
EMPTY_TLV: Final = ProxyProtocolTLV()
_new_parsed_tlv = ProxyProtocolTLV._from_parsed
