"""The implementation for connections that carry no PROXY protocol header."""

from __future__ import annotations

from socket import AddressFamily, SocketKind
from typing import TYPE_CHECKING, Optional, Union

from .base import DataReader, ProxyProtocol
from .result import ProxyResult, ProxyResultLocal

if TYPE_CHECKING:
    from .typing import Buffer, SockAddr

__all__ = ['ProxyProtocolNoop']

_LOCAL = ProxyResultLocal()


class ProxyProtocolNoop(ProxyProtocol):
    """Read nothing and write nothing: the connection is taken as it is.

    Every result is LOCAL, so the real socket addresses are used. It is never
    chosen by detection: :meth:`is_valid` raises.

    """

    __slots__ = ()

    def is_valid(self, signature: Union[bytes, bytearray, memoryview]) -> bool:
        raise NotImplementedError('ProxyProtocolNoop is never detected')

    def unpack(self, data: Buffer) -> ProxyResult:
        return _LOCAL

    def pack(self, result: ProxyResult) -> bytes:
        return b''

    async def read(self, reader: DataReader, *,
                   signature: bytes = b'') -> ProxyResult:
        return _LOCAL

    def build(self, source: SockAddr, dest: SockAddr, *,
              family: AddressFamily, protocol: Optional[SocketKind] = None,
              proxied: bool = True) -> bytes:
        return b''
