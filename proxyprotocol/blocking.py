"""Blocking sockets: read the PROXY header from a connected socket.

:func:`read_header` reads exactly the header and nothing after it, so the
socket can then be read by the application, wrapped in TLS
(``context.wrap_socket(sock, server_side=True)``), or handed to a
:mod:`socketserver` handler. v2 headers and the start of v1 headers are
read with exact-size ``recv`` calls; the rest of a v1 line is found with
``MSG_PEEK`` and then read through its ``\\n`` only.

:class:`ProxyProtocolMixin` adds the header to :mod:`socketserver` stream
servers (use it with :class:`socketserver.ThreadingMixIn`, so that a slow
client only holds its own thread).

"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Final, Optional

from .acceptor import ConnectionInfo, HeaderAcceptor
from .errors import ProxyProtocolError
from .policy import DEFAULT_CONFIG, HeaderConfig

__all__ = ['read_header', 'ProxyProtocolMixin']

_log = logging.getLogger(__name__)

# The longest v1 line (spec section 2.1); a longer one is refused anyway.
_V1_MAX: Final = 107


def read_header(sock: socket.socket,
                config: HeaderConfig = DEFAULT_CONFIG) -> ConnectionInfo:
    """Read the header from a connected socket, by the policy for its peer.

    The whole header must arrive within ``config.timeout``; the socket's
    own timeout is restored afterwards. Nothing past the header is read.
    With :attr:`~proxyprotocol.policy.Policy.OPTIONAL` and no header, the
    few bytes read to find that out are in
    :attr:`ConnectionInfo.initial_data`. On failure the socket is left
    open: the caller closes it.

    Args:
        sock: A connected stream socket (not yet wrapped in TLS).
        config: The policy, timeout and size cap.

    Raises:
        ProxyProtocolRejectedError: The policy refuses this peer.
        ProxyProtocolTimeoutError: The header did not arrive in time.
        ProxyProtocolEOFError: The connection ended before the header did.
        ProxyProtocolError: The header is invalid.
        OSError: The socket failed.

    """
    acceptor = HeaderAcceptor.for_socket(config, sock)
    info = acceptor.start()
    if info is not None:
        return info
    deadline = time.monotonic() + config.timeout
    saved_timeout = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise acceptor.timeout_error()
            sock.settimeout(remaining)
            try:
                data = _recv_next(sock, acceptor)
            except socket.timeout:
                raise acceptor.timeout_error() from None
            except ConnectionResetError:
                data = b''
            if not data:
                acceptor.feed_eof()
            outcome = acceptor.feed(data)
            if isinstance(outcome, ConnectionInfo):
                return outcome
    finally:
        sock.settimeout(saved_timeout)


def _recv_next(sock: socket.socket, acceptor: HeaderAcceptor) -> bytes:
    want = acceptor.want
    if want.want_bytes:
        return sock.recv(want.want_bytes)
    # The rest of a v1 line: look, then take only through the newline (or
    # all that is there, which is still part of the line).
    peeked = sock.recv(_V1_MAX, socket.MSG_PEEK)
    if not peeked:
        return b''
    end = peeked.find(b'\n')
    return sock.recv(end + 1 if end >= 0 else len(peeked))


class ProxyProtocolMixin:
    """A :mod:`socketserver` mixin that reads the header of every request.

    ::

        class Server(ProxyProtocolMixin, socketserver.ThreadingTCPServer):
            proxy_config = HeaderConfig(trusted=['10.0.0.0/8'])

    The header is read in :meth:`finish_request` (the request's own thread
    under :class:`~socketserver.ThreadingMixIn`). The handler is created
    only for requests that pass, with ``client_address`` set to the client
    the header named; ``self.server.proxy_info(self.request)`` gives the
    whole :class:`~proxyprotocol.acceptor.ConnectionInfo`, with the real
    peer as ``socket_peername``. Other requests are closed.

    """

    #: The policy, timeout and size cap.
    proxy_config: HeaderConfig = DEFAULT_CONFIG

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            info = read_header(request, self.proxy_config)
        except (ProxyProtocolError, OSError) as exc:
            self.proxy_header_failed(request, client_address, exc)
            return
        infos: dict[Any, ConnectionInfo] = \
            self.__dict__.setdefault('_proxy_infos', {})
        infos[request] = info
        try:
            super().finish_request(  # type: ignore[misc]
                request, info.peername)
        finally:
            infos.pop(request, None)

    def proxy_info(self, request: Any) -> Optional[ConnectionInfo]:
        """The :class:`~proxyprotocol.acceptor.ConnectionInfo` of a request
        being handled."""
        infos: dict[Any, ConnectionInfo] = self.__dict__.get(
            '_proxy_infos', {})
        return infos.get(request)

    def proxy_header_failed(self, request: Any, client_address: Any,
                            exc: BaseException) -> None:
        """Called when a request is dropped for its header (refused, timed
        out, invalid, incomplete); logs it at DEBUG level. The request is
        then closed by the server as usual."""
        _log.debug('dropping connection from %r: %s', client_address, exc)
