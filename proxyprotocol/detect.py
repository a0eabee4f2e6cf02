"""Detecting the version of a header from its first bytes.

v2 headers start with ``\\r\\n\\r\\n\\x00\\r\\nQUIT\\n``, v1 headers with
``PROXY``; anything else is rejected from its first byte. Detection is for
a listener configured to expect the PROXY protocol in either version, never
for guessing whether a header is there at all (spec section 5).

"""

from __future__ import annotations

from socket import AddressFamily, SocketKind
from typing import TYPE_CHECKING, Final, Optional, Sequence, Union

from .base import ProxyProtocol
from .errors import NeedMore, ProxyProtocolSyntaxError
from .result import ProxyResult
from .v1 import ProxyProtocolV1, unpack_v1
from .v2 import MAX_V2_LENGTH, V2_SIGNATURE, ProxyProtocolV2, unpack_v2

if TYPE_CHECKING:
    from .typing import Buffer, SockAddr

__all__ = ['ProxyProtocolDetect', 'unpack_any']

_V1_START: Final = b'PROXY '


def _detect_error() -> ProxyProtocolSyntaxError:
    return ProxyProtocolSyntaxError(
        'not a PROXY protocol header: it starts with neither "PROXY " (v1) '
        'nor the v2 signature', field='signature', offset=0)


def unpack_any(data: Buffer, *, v1: bool = True, v2: bool = True,
               max_length: int = MAX_V2_LENGTH
               ) -> Union[tuple[ProxyResult, int], NeedMore]:
    """Read a v1 or v2 header (as allowed) from the start of ``data``.

    Asks for the first 8 bytes before choosing a version, like 0.11, so a
    stream is never read past the header.

    """
    have = len(data)
    if have == 0:
        return NeedMore(8)
    first = data[0]
    if first == 0x0D and v2:
        if have >= 16:
            return unpack_v2(data, max_length=max_length)
        if bytes(data[:12]) != V2_SIGNATURE[:min(have, 12)]:
            raise _detect_error()
        return unpack_v2(data, max_length=max_length) if have >= 8 \
            else NeedMore(8 - have)
    if first == 0x50 and v1:
        if have >= 8:
            return unpack_v1(data)
        if bytes(data[:6]) != _V1_START[:min(have, 6)]:
            raise _detect_error()
        if have > 6:
            unpack_v1(data)  # rejects a 7th byte no header can have
        return NeedMore(8 - have)
    raise _detect_error()


_v1_unpack = ProxyProtocolV1().unpack
_v2_unpack = ProxyProtocolV2().unpack


class ProxyProtocolDetect(ProxyProtocol):
    """Accept either version, as listed in :attr:`versions`.

    Args:
        versions: The implementations to choose from, in order; by default
            v2 then v1.

    """

    __slots__ = ('versions', '_default')

    def __init__(self, *versions: ProxyProtocol) -> None:
        self._default = not versions
        self.versions: Sequence[ProxyProtocol] = versions or \
            [ProxyProtocolV2(), ProxyProtocolV1()]

    def is_valid(self, signature: Union[bytes, bytearray, memoryview]) -> bool:
        return any(v.is_valid(signature) for v in self.versions)

    def choose_version(self, signature: Union[bytes, bytearray, memoryview]
                       ) -> ProxyProtocol:
        """The first of :attr:`versions` that accepts ``signature``."""
        for version in self.versions:
            if version.is_valid(signature):
                return version
        raise _detect_error()

    def unpack(self, data: Buffer) -> ProxyResult:
        if self._default:
            # Past the first 16 bytes, unpack_any is the v1 or v2 reader;
            # their 0.11 methods read the common headers fastest.
            if type(data) is bytes and len(data) >= 16:
                first = data[0]
                if first == 0x0D:
                    return _v2_unpack(data)
                if first == 0x50:
                    return _v1_unpack(data)
            parsed = unpack_any(data)
            if type(parsed) is tuple:
                return parsed[0]
            return self._unpack(parsed)
        if len(data) < 8:
            return self._unpack(NeedMore(8 - len(data)))
        return self.choose_version(data[:8]).unpack(data)

    def pack(self, result: ProxyResult) -> bytes:
        for version in self.versions:
            try:
                return version.pack(result)
            except (KeyError, ValueError):
                continue
        raise ValueError('Could not build PROXY protocol header')

    def build(self, source: SockAddr, dest: SockAddr, *,
              family: AddressFamily, protocol: Optional[SocketKind] = None,
              proxied: bool = True) -> bytes:
        # 0.4 tried v1 first; keep that for the default detector.
        versions = list(reversed(self.versions)) if self._default \
            else self.versions
        for version in versions:
            try:
                return version.build(source, dest, family=family,
                                     protocol=protocol, proxied=proxied)
            except (KeyError, ValueError):
                continue
        raise ValueError('Could not build PROXY protocol header')
