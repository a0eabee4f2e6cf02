"""The sans-I/O entry points: parse and build headers, bytes in, bytes out.

* :func:`parse_header` reads a header (v1 or v2, as allowed) from the start of
  the bytes received so far and answers either :class:`NeedMore` or a
  :class:`ParsedHeader`: the result plus the exact number of bytes the header
  took. It never looks past the header.
* :class:`HeaderParser` does the same for bytes fed piece by piece, keeping
  what follows the header as :attr:`HeaderParser.trailing_data`.
* :func:`parse_datagram` reads the v2 header at the front of one UDP datagram
  and gives back the payload as a zero-copy :class:`memoryview`.
* :func:`build_header` and :func:`build_datagram` write them.

Nothing here touches a socket; the adapters move the bytes.

"""

from __future__ import annotations

from typing import Collection, Final, Optional, Union

from .errors import (NeedMore, ProxyProtocolBuildError,
                     ProxyProtocolSyntaxError)
from .detect import unpack_any
from .result import ProxyResult
from .typing import Buffer
from .v1 import pack_v1
from .v2 import MAX_V2_LENGTH, pack_v2, unpack_v2

__all__ = ['ParsedHeader', 'NeedMore', 'HeaderParser', 'parse_header',
           'parse_datagram', 'build_header', 'build_datagram',
           'DEFAULT_MAX_LENGTH']

#: The default cap on a v2 header's total length, in bytes. HAProxy reads a
#: header into one 16 KiB buffer by default, so no real sender exceeds it,
#: and it leaves room for an SSL TLV with a DER client certificate. The
#: protocol itself allows up to 65,551 bytes (:data:`MAX_V2_LENGTH`).
DEFAULT_MAX_LENGTH: Final = 16384


class ParsedHeader:
    """A complete header: what it says and how many bytes it took.

    Attributes:
        result: What the header says about the original connection.
        length: The number of bytes of the header; the application's data
            starts right after.
        version: 1 or 2.

    """

    __slots__ = ('_result', '_length', '_version')

    def __init__(self, result: ProxyResult, length: int, version: int) -> None:
        self._result = result
        self._length = length
        self._version = version

    @property
    def result(self) -> ProxyResult:
        """What the header says about the original connection."""
        return self._result

    @property
    def length(self) -> int:
        """How many bytes the header took."""
        return self._length

    @property
    def version(self) -> int:
        """The protocol version, 1 or 2."""
        return self._version

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ParsedHeader):
            return (self._result, self._length, self._version) == \
                (other._result, other._length, other._version)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._result, self._length, self._version))

    def __repr__(self) -> str:
        return (f'ParsedHeader(result={self._result!r}, '
                f'length={self._length}, version={self._version})')


def _versions(versions: Collection[int]) -> tuple[bool, bool]:
    v1, v2 = 1 in versions, 2 in versions
    if not (v1 or v2) or not set(versions) <= {1, 2}:
        raise ValueError(f'versions must be drawn from 1 and 2, not '
                         f'{versions!r}')
    return v1, v2


def parse_header(data: Buffer, *, versions: Collection[int] = (1, 2),
                 max_length: int = DEFAULT_MAX_LENGTH
                 ) -> Union[ParsedHeader, NeedMore]:
    """Read the header at the start of ``data``.

    Args:
        data: The bytes received so far (bytes, bytearray or memoryview).
        versions: The versions to accept.
        max_length: The longest v2 header to accept, in bytes.

    Returns:
        The parsed header, or what to read before calling again.

    Raises:
        ProxyProtocolError: The bytes can never become an acceptable header
            (a :class:`ProxyProtocolSyntaxError`, naming the field), or the
            CRC32C does not match (a :class:`ProxyProtocolChecksumError`).

    """
    if versions == (1, 2):
        parsed = unpack_any(data, max_length=max_length)
    else:
        v1, v2 = _versions(versions)
        parsed = unpack_any(data, v1=v1, v2=v2, max_length=max_length)
    if type(parsed) is tuple:
        result, length = parsed
        return ParsedHeader(result, length, 2 if data[0] == 0x0D else 1)
    assert isinstance(parsed, NeedMore)
    return parsed


class HeaderParser:
    """An incremental reader for bytes that arrive in pieces.

    Feed it what arrives; once the header is whole, :meth:`feed` returns it
    and :attr:`trailing_data` holds the bytes that followed it, which belong
    to the application (a TLS handshake, an HTTP request...). Each byte is
    examined a bounded number of times, so feeding one byte at a time costs
    linear time.

    Args:
        versions: The versions to accept.
        max_length: The longest v2 header to accept, in bytes.

    """

    __slots__ = ('_versions', '_max_length', '_buffer', '_header',
                 '_wanted')

    def __init__(self, *, versions: Collection[int] = (1, 2),
                 max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._versions = tuple(versions)
        _versions(self._versions)
        self._max_length = max_length
        self._buffer = bytearray()
        self._header: Optional[ParsedHeader] = None
        self._wanted = 1

    @property
    def header(self) -> Optional[ParsedHeader]:
        """The header, once it is whole."""
        return self._header

    @property
    def trailing_data(self) -> bytes:
        """The bytes received after the header (empty before it is whole)."""
        if self._header is None:
            return b''
        return bytes(self._buffer)

    @property
    def buffered(self) -> int:
        """How many bytes are held: the incomplete header, or the trailing
        data after it."""
        return len(self._buffer)

    def feed(self, data: Buffer) -> Union[ParsedHeader, NeedMore]:
        """Add received bytes; return the header or what is still needed.

        After the header is complete, further bytes are appended to
        :attr:`trailing_data` and the same header is returned.

        """
        buffer = self._buffer
        buffer += data
        header = self._header
        if header is not None:
            return header
        if 16 < len(buffer) < self._wanted and buffer[:1] != b'P':
            # Inside a v2 header's body: all was decided at 16 bytes.
            return NeedMore(self._wanted - len(buffer))
        outcome = parse_header(buffer, versions=self._versions,
                               max_length=self._max_length)
        if isinstance(outcome, ParsedHeader):
            self._header = outcome
            del buffer[:outcome.length]
            return outcome
        want = outcome.want_bytes
        self._wanted = len(buffer) + want if want else len(buffer) + 1
        return outcome


def parse_datagram(datagram: Buffer, *, max_length: int = MAX_V2_LENGTH
                   ) -> tuple[ParsedHeader, memoryview]:
    """Read the v2 header at the front of one UDP datagram.

    The 2026 spec (section 2) has the header and its payload travel in the
    same datagram, parsed independently for every datagram; so a header cut
    short is an error here, not a reason to wait.

    Returns:
        The header, and the payload as a view of ``datagram`` (no copy).

    """
    parsed = unpack_v2(datagram, max_length=max_length)
    if type(parsed) is not tuple:
        raise ProxyProtocolSyntaxError(
            f'the datagram of {len(datagram)} bytes ends inside the PROXY '
            'protocol header', field='v2.length', offset=len(datagram))
    result, length = parsed
    return ParsedHeader(result, length, 2), memoryview(datagram)[length:]


def build_header(result: ProxyResult, *, version: int = 2,
                 crc32c: bool = False) -> bytes:
    """Write ``result`` as a header.

    Args:
        result: What to send, e.g. from
            :func:`~proxyprotocol.sockaddr.result_from_sockaddrs`.
        version: 1 (text) or 2 (binary).
        crc32c: For v2, add a CRC32C TLV over the whole header.

    Raises:
        ProxyProtocolBuildError: The result cannot be written in ``version``.

    """
    if version == 2:
        return pack_v2(result, crc32c=crc32c)
    if version == 1:
        return pack_v1(result)
    raise ProxyProtocolBuildError(f'no PROXY protocol version {version!r}')


def build_datagram(result: ProxyResult, payload: Buffer, *,
                   crc32c: bool = False) -> bytes:
    """One UDP datagram: the v2 header for ``result``, then ``payload``."""
    return pack_v2(result, crc32c=crc32c) + bytes(payload)
