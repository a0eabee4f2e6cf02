"""Choosing an implementation by name: ``noop``, ``detect``, ``v1``, ``v2``."""

from __future__ import annotations

from enum import Enum
from typing import Optional

from .base import ProxyProtocol
from .detect import ProxyProtocolDetect
from .noop import ProxyProtocolNoop
from .v1 import ProxyProtocolV1
from .v2 import ProxyProtocolV2

__all__ = ['ProxyProtocolVersion']


class ProxyProtocolVersion(Enum):
    """The implementations, each a shared instance."""

    #: Read no header: use the connection as it is.
    NOOP = ProxyProtocolNoop()
    #: Accept v2 or v1, chosen by the header's signature.
    DETECT = ProxyProtocolDetect()
    #: Version 1 (text) only.
    V1 = ProxyProtocolV1()
    #: Version 2 (binary) only.
    V2 = ProxyProtocolV2()

    @classmethod
    def get(cls, name: Optional[str] = None) -> ProxyProtocol:
        """The implementation called ``name`` (any case); NOOP when empty.

        Raises:
            KeyError: No implementation has that name.

        """
        if not name:
            return cls.NOOP.value
        impl: ProxyProtocol = cls[name.upper()].value
        return impl
