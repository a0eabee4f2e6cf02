"""A socket view that names the proxied client instead of the proxy.

Many servers ask a transport for its ``'socket'`` and call
``getpeername()`` on it (uvicorn does so before it looks at
``'peername'``); on a connection behind a proxy that names the proxy. The
:class:`ProxiedSocket` this module defines stands in for that socket: its
addresses and family come from the header, as
:class:`~proxyprotocol.acceptor.ConnectionInfo` gives them, and everything
else (socket options, the descriptor, ``shutdown``...) is the real
socket's. :class:`~proxyprotocol.aio.protocol.ProxiedTransport` answers
``get_extra_info('socket')`` with one when the header gave addresses, and
keeps the real socket as ``get_extra_info('socket_real')``.

"""

from __future__ import annotations

import socket
from typing import Any

from ..acceptor import ConnectionInfo
from ..typing import SockAddr

__all__ = ['ProxiedSocket']


class ProxiedSocket:
    """A view of a connection's socket that reports the addresses the
    header gave.

    :meth:`getpeername`, :meth:`getsockname` and :attr:`family` answer from
    the :class:`~proxyprotocol.acceptor.ConnectionInfo`, so that code which
    reads the client from the socket sees the client, not the proxy. Every
    other attribute is the real socket's (socket options for
    ``TCP_NODELAY`` and the like, :meth:`fileno`, ``shutdown``...); note
    that :attr:`family` is the family of the *header's* addresses, which
    may differ from the real socket's (``real.family``).

    Args:
        sock: The real socket (a socket, asyncio's transport socket or
            uvloop's).
        info: The connection's information.

    """

    __slots__ = ('_sock', '_info')

    def __init__(self, sock: Any, info: ConnectionInfo) -> None:
        self._sock = sock
        self._info = info

    @property
    def info(self) -> ConnectionInfo:
        """The connection's information (the real addresses are there)."""
        return self._info

    @property
    def real(self) -> Any:
        """The real socket behind this view."""
        return self._sock

    @property
    def family(self) -> socket.AddressFamily:
        """The family of :meth:`getpeername`'s address."""
        family = self._info.family
        if family is None or family == socket.AF_UNSPEC:
            real: socket.AddressFamily = self._sock.family
            return real
        return family

    @property
    def type(self) -> socket.SocketKind:
        """The real socket's type."""
        kind: socket.SocketKind = self._sock.type
        return kind

    @property
    def proto(self) -> int:
        """The real socket's protocol number."""
        proto: int = self._sock.proto
        return proto

    def getpeername(self) -> SockAddr:
        """The client: the header's source when it gave one."""
        return self._info.peername

    def getsockname(self) -> SockAddr:
        """The address the client connected to, likewise."""
        return self._info.sockname

    def fileno(self) -> int:
        """The real socket's descriptor."""
        fileno: int = self._sock.fileno()
        return fileno

    def getsockopt(self, *args: Any) -> Any:
        """The real socket's option."""
        return self._sock.getsockopt(*args)

    def setsockopt(self, *args: Any) -> None:
        """Set an option of the real socket."""
        self._sock.setsockopt(*args)

    def __getattr__(self, name: str) -> Any:
        # Only called for what the view does not define: the real socket's.
        if name in ProxiedSocket.__slots__:
            raise AttributeError(name)
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return (f'<ProxiedSocket peername={self.getpeername()!r} '
                f'sockname={self.getsockname()!r}>')
