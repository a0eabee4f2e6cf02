"""CRC32C (Castagnoli), the checksum of the PP2_TYPE_CRC32C TLV.

The spec (section 2.2.3) names the CRC32c of RFC 4960, appendix B. The
C-accelerated :mod:`crc32c` package is a dependency of the default install and
is used when it imports; otherwise a pure-Python implementation takes over, so
that a checksum is always verified and always emitted when asked for.

"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = ['crc32c', 'crc32c_pure', 'Checksum', 'ACCELERATED']


class Checksum(Protocol):
    """A chainable checksum function, like :func:`zlib.crc32`."""

    def __call__(self, val: bytes, crc: int = ..., /) -> int:
        ...


_POLY: Final = 0x82F63B78  # CRC32C, reflected


def _make_tables() -> tuple[tuple[int, ...], ...]:
    base = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        base.append(crc)
    tables = [base]
    for _ in range(3):
        prev = tables[-1]
        tables.append([(prev[n] >> 8) ^ base[prev[n] & 0xFF]
                       for n in range(256)])
    return tuple(tuple(t) for t in tables)


_T0, _T1, _T2, _T3 = _make_tables()


def crc32c_pure(val: bytes, crc: int = 0, /) -> int:
    """Compute CRC32C in pure Python, slicing four bytes at a time."""
    data = memoryview(val).cast('B')
    crc ^= 0xFFFFFFFF
    t0, t1, t2, t3 = _T0, _T1, _T2, _T3
    end4 = len(data) & ~3
    from_bytes = int.from_bytes
    for i in range(0, end4, 4):
        crc ^= from_bytes(data[i:i + 4], 'little')
        crc = (t3[crc & 0xFF] ^ t2[(crc >> 8) & 0xFF]
               ^ t1[(crc >> 16) & 0xFF] ^ t0[crc >> 24])
    for i in range(end4, len(data)):
        crc = t0[(crc ^ data[i]) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    from crc32c import crc32c as _accelerated
except ImportError:  # pragma: no cover - depends on the install
    #: The CRC32C function in use: accelerated when available.
    crc32c: Checksum = crc32c_pure
    #: Whether the C-accelerated implementation is in use.
    ACCELERATED = False
else:
    crc32c = _accelerated
    ACCELERATED = True
