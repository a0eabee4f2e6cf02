"""The package's errors, sorted by who is to blame.

* :class:`ProxyProtocolError` (a :class:`ValueError`) is the base of every
  rejection of bytes received from a peer. Its subclasses say why:
  :class:`ProxyProtocolSyntaxError` for a malformed header,
  :class:`ProxyProtocolChecksumError` for a CRC32C mismatch and
  :class:`ProxyProtocolTooLongError` for a header over the configured cap.
  Each carries the offending ``field`` and the byte ``offset`` where known.
* :class:`ProxyProtocolIncompleteError` means "not yet": more bytes are needed.
  It is deliberately *not* a :class:`ValueError` (as in 0.11), so that
  ``except ValueError`` never swallows a header that is merely incomplete.
* :class:`ProxyProtocolBuildError` (also a :class:`ValueError`) blames the
  caller: the values given cannot be encoded as a header.

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .result import ProxyResult

__all__ = ['ProxyProtocolError', 'ProxyProtocolSyntaxError',
           'ProxyProtocolChecksumError', 'ProxyProtocolTooLongError',
           'ProxyProtocolIncompleteError', 'ProxyProtocolBuildError',
           'ProxyProtocolWantRead', 'NeedMore']


class ProxyProtocolError(ValueError):
    """A PROXY protocol header was rejected.

    Args:
        message: What is wrong, in words.
        field: The header field at fault, e.g. ``'v2.tlv.authority'``.
        offset: The byte offset of that field in the header, where known.

    """

    def __init__(self, message: str = '', *, field: Optional[str] = None,
                 offset: Optional[int] = None) -> None:
        super().__init__(message)
        self.field = field
        self.offset = offset

    def __str__(self) -> str:
        message = super().__str__()
        where = []
        if self.field is not None:
            where.append(f'field {self.field}')
        if self.offset is not None:
            where.append(f'offset {self.offset}')
        if where and message:
            return f'{message} ({", ".join(where)})'
        return message


class ProxyProtocolSyntaxError(ProxyProtocolError):
    """The bytes can never become a valid header: they break the spec."""


class ProxyProtocolTooLongError(ProxyProtocolSyntaxError):
    """The header is longer than the configured or the specified maximum."""


class ProxyProtocolChecksumError(ProxyProtocolError):
    """The header's CRC32C TLV does not match the bytes received.

    Args:
        result: The fully parsed header, for logging.

    """

    def __init__(self, result: ProxyResult, message: str = '', *,
                 field: Optional[str] = 'v2.tlv.crc32c',
                 offset: Optional[int] = None) -> None:
        super().__init__(message or 'CRC32C checksum mismatch',
                         field=field, offset=offset)
        self.result = result


class ProxyProtocolBuildError(ValueError):
    """The values given cannot be encoded as a PROXY protocol header."""


class ProxyProtocolWantRead:
    """What a parser needs before it can go on: "need more".

    Exactly one of the two is set: ``want_bytes``, read this many more bytes
    (the least that can make progress); or ``want_line``, read through the
    next ``\\n`` (a v1 line).

    Args:
        want_bytes: How many more bytes are needed.
        want_line: Whether the rest of a v1 line is needed.

    """

    __slots__ = ('_want_bytes', '_want_line')

    def __init__(self, want_bytes: Optional[int] = None, *,
                 want_line: bool = False) -> None:
        self._want_bytes = want_bytes
        self._want_line = want_line

    @property
    def want_bytes(self) -> Optional[int]:
        """Read exactly this many more bytes, or None for a line."""
        return self._want_bytes

    @property
    def want_line(self) -> bool:
        """Read through the next ``\\n``."""
        return self._want_line

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProxyProtocolWantRead):
            return (self._want_bytes == other._want_bytes
                    and self._want_line == other._want_line)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._want_bytes, self._want_line))

    def __repr__(self) -> str:
        if self._want_line:
            return 'NeedMore(want_line=True)'
        return f'NeedMore(want_bytes={self._want_bytes!r})'


#: The name the sans-I/O API uses for :class:`ProxyProtocolWantRead`.
NeedMore = ProxyProtocolWantRead


class ProxyProtocolIncompleteError(Exception):
    """More bytes are needed to finish the header.

    Args:
        want_read: What to read next.

    """

    def __init__(self, want_read: ProxyProtocolWantRead) -> None:
        super().__init__('Additional data needed')
        self.want_read = want_read
