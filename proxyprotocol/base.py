"""The interface every PROXY protocol implementation offers.

:class:`ProxyProtocol` carries both upstream generations' methods, so code
written against either keeps working: 0.11's sans-I/O ``unpack``/``pack`` and
0.4's ``read``/``build``. Only :meth:`ProxyProtocol.is_valid` is abstract; the
0.4 methods are written in terms of the 0.11 ones.

This module is also the 0.4 README's import path for ``ProxyProtocol``,
``ProxyProtocolError``, ``ProxyProtocolResult`` and ``DataReader``.

"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from socket import AddressFamily, SocketKind
from typing import TYPE_CHECKING, Optional, Union

from .errors import (NeedMore, ProxyProtocolError,
                     ProxyProtocolIncompleteError)
from .result import ProxyResult as ProxyProtocolResult
from .result import ProxyResultUnknown
from .typing import StreamReaderProtocol as DataReader

if TYPE_CHECKING:
    from .result import ProxyResult
    from .typing import Buffer, SockAddr

__all__ = ['ProxyProtocol', 'ProxyProtocolError', 'ProxyProtocolResult',
           'DataReader']


class ProxyProtocol(metaclass=ABCMeta):
    """A PROXY protocol implementation: v1, v2, detection or none."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'

    @abstractmethod
    def is_valid(self, signature: Union[bytes, bytearray, memoryview]) -> bool:
        """Whether ``signature``, the first 8 bytes, starts such a header."""
        ...

    def unpack(self, data: Buffer) -> ProxyResult:
        """Parse the header at the start of ``data``, all bytes read so far.

        Raises:
            ProxyProtocolIncompleteError: More bytes are needed; its
                ``want_read`` says how many.
            ProxyProtocolSyntaxError: The bytes can never become a header.
            ProxyProtocolChecksumError: The CRC32C TLV does not match.

        """
        raise NotImplementedError(f'{type(self).__name__}.unpack')

    def pack(self, result: ProxyResult) -> bytes:
        """Write ``result`` as a header.

        Raises:
            KeyError: This version cannot express the result's kind.
            ValueError: The result's values cannot be encoded.

        """
        raise NotImplementedError(f'{type(self).__name__}.pack')

    @staticmethod
    def _unpack(parsed: Union[tuple[ProxyResult, int], NeedMore]
                ) -> ProxyResult:
        # The 0.11 way to say "need more": an exception.
        if type(parsed) is tuple:
            return parsed[0]
        assert isinstance(parsed, NeedMore)
        raise ProxyProtocolIncompleteError(parsed)

    async def read(self, reader: DataReader, *,
                   signature: bytes = b'') -> ProxyResult:
        """Read a header from ``reader`` (the 0.4 API).

        Reads only the header's bytes, through ``readexactly`` and
        ``readuntil``; ``signature`` holds bytes already taken from the
        stream. On end of stream or a reset before the header is whole, it
        returns a :class:`~proxyprotocol.result.ProxyResultUnknown` holding
        the exception. It waits as long as the peer does: put it under a
        timeout, or use :mod:`proxyprotocol.reader`.

        """
        buf = bytes(signature)
        while True:
            try:
                return self.unpack(buf)
            except ProxyProtocolIncompleteError as exc:
                want = exc.want_read
            try:
                if want.want_bytes:
                    buf += await reader.readexactly(want.want_bytes)
                else:
                    buf += await reader.readuntil(b'\n')
            except (EOFError, ConnectionResetError) as exc:
                return ProxyResultUnknown(exc)

    def build(self, source: SockAddr, dest: SockAddr, *,
              family: AddressFamily, protocol: Optional[SocketKind] = None,
              proxied: bool = True) -> bytes:
        """Write a header for socket-style addresses (the 0.4 API).

        Raises:
            KeyError: This version cannot express ``family``.
            ValueError: The addresses cannot be encoded.

        """
        from .sockaddr import result_from_sockaddrs
        result = result_from_sockaddrs(source, dest, family=family,
                                       protocol=protocol, proxied=proxied)
        return self.pack(result)
