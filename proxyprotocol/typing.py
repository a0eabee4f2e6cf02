"""Type aliases and protocols shared by the package's modules.

``Address`` is an address as results hold it (``ipaddress`` objects);
``SockAddr`` is an address as :mod:`socket` gives it (strings and tuples).

"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Mapping, Optional, Tuple, Union

from typing_extensions import Protocol, TypeAlias

__all__ = ['SockAddr', 'Address', 'Cipher', 'PeerCert', 'Buffer',
           'StreamReaderProtocol', 'TransportProtocol']

#: An address as :meth:`socket.socket.getpeername` returns it.
SockAddr: TypeAlias = Union[None, str, Tuple[str, int],
                            Tuple[str, int, int, int]]

#: An address as a result holds it.
Address: TypeAlias = Union[None, str, Tuple[IPv4Address, int],
                           Tuple[IPv6Address, int]]

#: As :meth:`ssl.SSLSocket.cipher` returns it.
Cipher: TypeAlias = Tuple[str, str, Optional[int]]

#: As :meth:`ssl.SSLSocket.getpeercert` returns it.
PeerCert: TypeAlias = Mapping[str, Any]

#: The byte sequences the parsers accept.
Buffer: TypeAlias = Union[bytes, bytearray, memoryview]


class StreamReaderProtocol(Protocol):
    """What the adapters need of a stream, e.g. :class:`asyncio.StreamReader`.

    The 0.4 ``read()`` methods use :meth:`readexactly` and :meth:`readuntil`;
    the 0.11 reader uses :meth:`readexactly` and :meth:`readline`.

    """

    async def readexactly(self, n: int) -> bytes:
        ...

    async def readline(self) -> bytes:
        ...

    async def readuntil(self, separator: bytes = b'\n') -> bytes:
        ...


class TransportProtocol(Protocol):
    """Anything with ``get_extra_info``: transports and stream writers."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        ...
