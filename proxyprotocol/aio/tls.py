"""TLS over memory buffers, for TLS that starts after the PROXY header.

A PROXY protocol header always travels in clear text, before any TLS
handshake. A server must therefore read the header first and only then start
TLS on the same connection. ``loop.start_tls`` cannot be used for that: the
bytes of the ClientHello often arrive in the same segment as the header, and
CPython's streams drop whatever is already buffered when TLS starts (CPython
issue 142352; uvloop issue 707), while uvloop refuses transports it did not
create. :class:`TLSLayer` instead drives an :class:`ssl.SSLObject` over
:class:`ssl.MemoryBIO` buffers: the bytes that followed the header are simply
its first input, on any event loop.

It is sans-I/O: the protocol adapter feeds it ciphertext, asks it for
plaintext, and sends what :meth:`TLSLayer.outgoing` returns.

"""

from __future__ import annotations

import ssl
from typing import Any, Optional

from ..typing import Buffer

__all__ = ['TLSLayer', 'DEFAULT_HANDSHAKE_TIMEOUT']

#: Seconds allowed for the TLS handshake after the header, as asyncio's own
#: default (``ssl_handshake_timeout``).
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

_READ_SIZE = 65536


class TLSLayer:
    """One TLS session driven through memory buffers.

    Args:
        context: The TLS settings.
        server_side: Whether this end is the server (the usual case after a
            PROXY header).
        server_hostname: For the client side: the name to check.

    """

    __slots__ = ('_incoming', '_outgoing', '_object', '_handshake_done',
                 '_unwrapped')

    def __init__(self, context: ssl.SSLContext, *, server_side: bool = True,
                 server_hostname: Optional[str] = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side,
            server_hostname=server_hostname)
        self._handshake_done = False
        self._unwrapped = False

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The TLS session, for certificates, cipher, ALPN..."""
        return self._object

    @property
    def handshake_done(self) -> bool:
        """Whether the handshake has completed."""
        return self._handshake_done

    def receive(self, data: Buffer) -> None:
        """Take ciphertext received from the peer."""
        self._incoming.write(data)

    def do_handshake(self) -> bool:
        """Advance the handshake; True once it is complete.

        Raises:
            ssl.SSLError: The handshake failed (send :meth:`outgoing`, which
                may hold an alert, then close).

        """
        if self._handshake_done:
            return True
        try:
            self._object.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self._handshake_done = True
        return True

    def read(self) -> Optional[bytes]:
        """The next piece of plaintext: None if more ciphertext is needed,
        ``b''`` once the peer has closed the session (close_notify).

        Raises:
            ssl.SSLError: The peer sent something invalid.

        """
        try:
            return self._object.read(_READ_SIZE)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            return b''

    def write(self, data: Buffer) -> None:
        """Encrypt plaintext; the records go to :meth:`outgoing`."""
        view = memoryview(data)
        while view:
            sent = self._object.write(view)
            view = view[sent:]

    def unwrap(self) -> None:
        """Start closing the session: queue a close_notify alert."""
        if self._unwrapped or not self._handshake_done:
            return
        self._unwrapped = True
        try:
            self._object.unwrap()
        except ssl.SSLError:
            # SSLWantReadError: the peer's close_notify has not come yet,
            # and we do not wait for it (as asyncio does not).
            pass

    def outgoing(self) -> bytes:
        """The ciphertext waiting to be sent."""
        return self._outgoing.read()

    def extra_info(self, name: str, default: Any = None) -> Any:
        """The TLS entries of ``get_extra_info``, as asyncio names them."""
        obj = self._object
        if name == 'ssl_object':
            return obj
        if name == 'sslcontext':
            return obj.context
        if not self._handshake_done:
            return default
        if name == 'peercert':
            return obj.getpeercert()
        if name == 'cipher':
            return obj.cipher()
        if name == 'compression':
            return obj.compression()
        return default

    @staticmethod
    def has_extra_info(name: str) -> bool:
        """Whether ``name`` is one of the TLS entries."""
        return name in ('ssl_object', 'sslcontext', 'peercert', 'cipher',
                        'compression')
