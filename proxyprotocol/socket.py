"""The 0.4 README's import path for :class:`~proxyprotocol.sock.SocketInfo`.

``from proxyprotocol.socket import SocketInfo`` gets the very same classes as
:mod:`proxyprotocol.sock` (this module never existed upstream, but the 0.4
README used it). Inside the package, ``import socket`` still means the
standard library, as imports are absolute.

"""

from __future__ import annotations

from .sock import SocketInfo, SocketInfoLocal, SocketInfoProxy

__all__ = ['SocketInfo', 'SocketInfoProxy', 'SocketInfoLocal']
