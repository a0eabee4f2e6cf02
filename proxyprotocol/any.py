"""``ProxyProtocolAny``, a name the published 0.4.0 wheel carried.

That wheel shipped a leftover ``any.py`` from before 0.1 with a detector
taking ``v1=`` and ``v2=`` keywords. It is kept as a thin
:class:`~proxyprotocol.detect.ProxyProtocolDetect` so imports of it work.

"""

from __future__ import annotations

from typing import Optional

from .base import ProxyProtocol
from .detect import ProxyProtocolDetect
from .v1 import ProxyProtocolV1
from .v2 import ProxyProtocolV2

__all__ = ['ProxyProtocolAny']


class ProxyProtocolAny(ProxyProtocolDetect):
    """Accept v1 or v2, using the given implementations of each."""

    __slots__ = ()

    def __init__(self, *, v1: Optional[ProxyProtocol] = None,
                 v2: Optional[ProxyProtocol] = None) -> None:
        if v1 is None and v2 is None:
            super().__init__()
        else:
            super().__init__(v2 or ProxyProtocolV2(), v1 or ProxyProtocolV1())
