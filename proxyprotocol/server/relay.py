"""The relay: one proxied connection, from accept to close.

A :class:`Relay` owns two non-blocking sockets, the client's and the one it
opens to the destination, and moves bytes between them. It does not use
asyncio transports; owning the sockets lets it

* work like HAProxy: try each read and write at once, and wait for an event
  (from a :class:`~proxyprotocol.server.poller.Poller`) only after the
  kernel said "would block", so a short connection costs few system calls;
* read into one buffer shared by every connection of the process, so an
  idle connection holds no buffer at all;
* stop reading one side as soon as the other cannot take more (a partial
  ``send``): at most one read (``buf_len`` bytes) waits per direction, which
  is all the backpressure there is to it;
* switch a direction that carries bulk data to ``os.splice`` through a pipe
  (Linux), so those bytes never enter the process;
* pass on a half-close (``shutdown(SHUT_WR)``) in each direction on its
  own, and an error as a reset.

The life of a connection: read the header a trusted proxy in front sent
(optional), complete the TLS handshake when the listener terminates TLS
(optional), connect to the destination, send the PROXY header, complete a
TLS handshake with the destination (optional), then relay until both
directions have ended. TLS runs through
:class:`~proxyprotocol.aio.tls.TLSLayer` (memory buffers), so it fits the
same loop. Timeouts are enforced from outside by the service's sweeper,
which reads :attr:`Relay.deadline` and :attr:`Relay.active`.

"""

from __future__ import annotations

import _socket
import asyncio
import errno
import fcntl
import logging
import os
import socket
import ssl
import time
from socket import SHUT_WR, SOL_SOCKET, SO_ERROR
from typing import TYPE_CHECKING, Any, Callable, Final, Optional

from ..acceptor import ConnectionInfo, HeaderAcceptor
from ..aio.tls import TLSLayer
from ..errors import ProxyProtocolError
from .headers import TLSFacts
from .poller import ERR, HUP, RDHUP, READ_EVENTS, WRITE_EVENTS, Poller
from .tlsinfo import facts_from_ssl_object

if TYPE_CHECKING:
    from .service import Service

__all__ = ['Relay', 'DEFAULT_BUF_LEN', 'SPLICE_PIPE_SIZE', 'splice_available',
           'disable_splice', 'set_buffer_size', 'format_address']

_log = logging.getLogger('proxyprotocol.server')

#: Bytes read at once, and the most that waits in memory per direction when
#: the receiving side is slow. 64 KiB: a loopback or LAN socket usually has
#: that much ready at a time; more only helps bulk transfers, which splice.
DEFAULT_BUF_LEN: Final = 65536

#: The pipe size asked for (``F_SETPIPE_SZ``) when a direction starts to
#: splice. 1 MiB is Linux's default limit for unprivileged processes
#: (``/proc/sys/fs/pipe-max-size``); the kernel holds the pages, not us.
SPLICE_PIPE_SIZE: Final = 1 << 20

#: Reads per wake-up before a busy direction lets other connections run.
_ROUNDS: Final = 16

_SPLICE: Optional[Callable[..., int]] = getattr(os, 'splice', None)
_SPLICE_FLAGS: Final = getattr(os, 'SPLICE_F_MOVE', 1) | \
    getattr(os, 'SPLICE_F_NONBLOCK', 2)
_F_SETPIPE_SZ: Final = getattr(fcntl, 'F_SETPIPE_SZ', 1031)
_NO_SPLICE: Final = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP))

_AGAIN: Final = (BlockingIOError, InterruptedError)
_RESET_ERRNOS: Final = frozenset((errno.ECONNRESET, errno.EPIPE,
                                  errno.ECONNABORTED, errno.ETIMEDOUT))
_CLOSED_EVENTS: Final = RDHUP | HUP | ERR
_LINGER_ABORT: Final = b'\x01\x00\x00\x00\x00\x00\x00\x00'

# The read buffer shared by every relay of the process. The loop runs one
# callback at a time, and a callback never keeps a reference past its end:
# what cannot be sent at once is copied out.
_buf = bytearray(DEFAULT_BUF_LEN)
_view = memoryview(_buf)
_buf_len = DEFAULT_BUF_LEN
_splice_ok = _SPLICE is not None

# States of a relay.
HEADER: Final = 0         # reading the PROXY header of a proxy in front
HANDSHAKE: Final = 1      # TLS handshake with the client
CONNECTING: Final = 2     # connecting to the destination
OUT_HANDSHAKE: Final = 3  # TLS handshake with the destination
RELAYING: Final = 4
CLOSED: Final = 5

STATE_NAMES: Final = ('header', 'TLS handshake', 'connect',
                      'TLS handshake with the destination', 'relay', 'closed')


def set_buffer_size(size: int) -> None:
    """Set the shared read buffer's size (``--buf-len``)."""
    global _buf, _view, _buf_len
    if size < 1024:
        raise ValueError('the buffer must hold at least 1024 bytes')
    _buf = bytearray(size)
    _view = memoryview(_buf)
    _buf_len = size


def splice_available() -> bool:
    """Whether bulk directions are spliced (Linux, not disabled)."""
    return _splice_ok


def disable_splice() -> None:
    """Never splice (``--no-splice``, or after the kernel refused)."""
    global _splice_ok
    _splice_ok = False


def _abort(sock: _socket.socket) -> None:
    # A reset rather than an orderly end: SO_LINGER with a zero timeout.
    try:
        sock.setsockopt(SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
    except OSError:
        pass


class _Flow:
    """One direction of a relay: bytes from ``src`` to ``dst``."""

    __slots__ = ('relay', 'loop', 'src', 'dst', 'src_fd', 'dst_fd',
                 'src_tls', 'dst_tls', 'pending', 'ready', 'hup', 'eof',
                 'done', 'pipe_r', 'pipe_w', 'in_pipe', 'count', 'pump',
                 'name')

    def __init__(self, relay: Relay, src: _socket.socket, dst: _socket.socket,
                 src_tls: Optional[TLSLayer], dst_tls: Optional[TLSLayer],
                 name: str) -> None:
        self.relay = relay
        self.loop = relay.loop
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.src_tls = src_tls
        self.dst_tls = dst_tls
        #: Bytes read but not yet accepted by ``dst`` (``b''`` while the
        #: pipe holds them); None when nothing waits.
        self.pending: Optional[bytes] = None
        #: Whether ``src`` may have bytes (or its end) to read.
        self.ready = False
        #: Whether ``src``'s peer has closed (read until the end).
        self.hup = False
        #: Whether ``src`` has ended.
        self.eof = False
        #: Whether the end has been passed on to ``dst``.
        self.done = False
        self.pipe_r = -1
        self.pipe_w = -1
        self.in_pipe = 0
        self.count = 0
        self.name = name
        self.pump: Callable[[], None] = self.pump_plain \
            if src_tls is None and dst_tls is None else self.pump_tls

    def resume(self) -> None:
        """Go on reading after giving other connections a turn."""
        if self.relay.state == RELAYING and self.pending is None \
                and self.ready and not self.eof:
            self.pump()

    def _blocked(self, data: bytes) -> None:
        self.pending = data
        self.relay.interest()

    # -- plain sockets -----------------------------------------------------

    def pump_plain(self) -> None:
        """Read ``src`` and write ``dst`` until one of them would block."""
        src, dst, relay = self.src, self.dst, self.relay
        for _ in range(_ROUNDS):
            try:
                n = src.recv_into(_buf)
            except _AGAIN:
                self.ready = False
                return
            except OSError as exc:
                relay.fail(exc, self.name)
                return
            if not n:
                self.ready = False
                self.at_eof()
                return
            relay.active = True
            self.count += n
            try:
                sent = dst.send(_view[:n])
            except _AGAIN:
                sent = 0
            except OSError as exc:
                relay.fail(exc, self.name)
                return
            if sent < n:
                self._blocked(bytes(_view[sent:n]))
                return
            if n < _buf_len:
                # A short read emptied the socket: the next byte will be
                # an event (unless the peer closed: then read its end).
                if not self.hup:
                    self.ready = False
                    return
            elif _splice_ok:
                self.start_splice()
                self.pump_splice()
                return
        self.loop.call_soon(self.resume)

    def flush(self) -> None:
        """``dst`` can take more: send what waits, then read again."""
        if self.in_pipe:
            if not self.splice_out():
                return
        else:
            data = self.pending
            assert data is not None
            try:
                sent = self.dst.send(data)
            except _AGAIN:
                return
            except OSError as exc:
                self.relay.fail(exc, self.name)
                return
            self.relay.active = True
            if sent < len(data):
                self.pending = data[sent:]
                return
        self.pending = None
        self.relay.interest()
        if self.eof:
            self.pass_eof()
        elif self.ready:
            self.pump()

    # -- splicing ----------------------------------------------------------

    def start_splice(self) -> None:
        """Move this direction's bytes through a pipe, kernel to kernel."""
        try:
            self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.fcntl(self.pipe_w, _F_SETPIPE_SZ, SPLICE_PIPE_SIZE)
        except OSError:
            pass
        self.pump = self.pump_splice

    def pump_splice(self) -> None:
        """Splice ``src`` into the pipe and the pipe into ``dst`` until one
        would block. Unlike a read, a splice may stop short of what the
        socket holds (the pipe has a number of slots), so only "would
        block" means the socket is empty."""
        assert _SPLICE is not None
        relay = self.relay
        for _ in range(_ROUNDS):
            try:
                n = _SPLICE(self.src_fd, self.pipe_w, SPLICE_PIPE_SIZE,
                            flags=_SPLICE_FLAGS)
            except _AGAIN:
                self.ready = False
                return
            except OSError as exc:
                if exc.errno in _NO_SPLICE:
                    # This kernel or socket type cannot: copy instead.
                    disable_splice()
                    self.pump = self.pump_plain
                    self.pump_plain()
                    return
                relay.fail(exc, self.name)
                return
            if not n:
                self.ready = False
                self.at_eof()
                return
            relay.active = True
            self.count += n
            self.in_pipe = n
            if not self.splice_out():
                if relay.state != CLOSED:
                    self._blocked(b'')
                return
        self.loop.call_soon(self.resume)

    def splice_out(self) -> bool:
        """Move the pipe's bytes to ``dst``; True once it is empty."""
        assert _SPLICE is not None
        while self.in_pipe:
            try:
                n = _SPLICE(self.pipe_r, self.dst_fd, self.in_pipe,
                            flags=_SPLICE_FLAGS)
            except _AGAIN:
                return False
            except OSError as exc:
                self.relay.fail(exc, self.name)
                return False
            self.in_pipe -= n
        return True

    # -- TLS on either side ------------------------------------------------

    def pump_tls(self) -> None:
        """Read ``src`` (deciphering a TLS side), write ``dst``
        (enciphering a TLS side), until one would block."""
        relay = self.relay
        tls = self.src_tls
        for _ in range(_ROUNDS):
            try:
                n = self.src.recv_into(_buf)
            except _AGAIN:
                self.ready = False
                return
            except OSError as exc:
                relay.fail(exc, self.name)
                return
            ended = not n
            if tls is None:
                data = bytes(_view[:n])
            else:
                if n:
                    tls.receive(_view[:n])
                pieces = []
                try:
                    while True:
                        piece = tls.read()
                        if piece is None:
                            break
                        if not piece:
                            ended = True
                            break
                        pieces.append(piece)
                except ssl.SSLError as exc:
                    relay.fail(exc, self.name)
                    return
                # Reading may have produced records for the peer (a key
                # update answer): they go back the other way.
                reply = tls.outgoing()
                if reply:
                    relay.flow_to(self.src).send_raw(reply)
                    if relay.state == CLOSED:
                        return
                data = b''.join(pieces)
            if data:
                relay.active = True
                self.count += len(data)
                self.send(data)
                if relay.state == CLOSED:
                    return
            if ended:
                self.ready = False
                self.at_eof()
                return
            if self.pending is not None:
                return
            if n < _buf_len and not self.hup:
                self.ready = False
                return
        self.loop.call_soon(self.resume)

    def send(self, data: bytes) -> None:
        """Send plaintext to ``dst``; what does not fit waits, and reading
        stops until it is sent."""
        if self.dst_tls is not None:
            self.dst_tls.write(data)
            data = self.dst_tls.outgoing()
        self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (ciphertext for a TLS ``dst``)."""
        if not data:
            return
        if self.pending is not None:
            self.pending += data
            return
        try:
            sent = self.dst.send(data)
        except _AGAIN:
            sent = 0
        except OSError as exc:
            self.relay.fail(exc, self.name)
            return
        if sent < len(data):
            self._blocked(data[sent:])

    # -- the end of a direction --------------------------------------------

    def at_eof(self) -> None:
        """``src`` has ended: end ``dst``'s side once what waits is sent."""
        self.eof = True
        self.relay.interest()
        if self.pending is None:
            self.pass_eof()

    def pass_eof(self) -> None:
        """Half-close ``dst``: a TLS close_notify, then ``shutdown``."""
        tls = self.dst_tls
        if tls is not None:
            tls.unwrap()
            data = tls.outgoing()
            if data:
                try:
                    self.dst.send(data)
                except OSError:
                    pass
        relay = self.relay
        other = relay.down if self is relay.up else relay.up
        if other is None or not other.done:
            # Else the close that follows at once ends this side too.
            try:
                self.dst.shutdown(SHUT_WR)
            except OSError:
                pass
        self.done = True
        relay.flow_done()

    def close_pipe(self) -> None:
        if self.pipe_r >= 0:
            os.close(self.pipe_r)
            os.close(self.pipe_w)
            self.pipe_r = self.pipe_w = -1


class Relay:
    """One proxied connection.

    Args:
        service: What the listener it came from is configured to do.
        sock: The accepted client socket (non-blocking).
        peer: The client's address, as ``accept()`` gave it.
        local: The address it connected to (``getsockname()``).

    """

    __slots__ = ('service', 'loop', 'poller', 'edge', 'client', 'server',
                 'peer', 'local', 'state', 'deadline', 'active', 'idle_since',
                 'acceptor', 'info', 'client_tls', 'server_tls', 'tls_facts',
                 'early', 'to_client', 'to_server', 'up', 'down',
                 'addr_index', 'started', 'header_len', 'c_ready', 'c_hup',
                 's_ready', 's_hup', 'dnsbl')

    def __init__(self, service: Service, sock: _socket.socket, peer: Any,
                 local: Any) -> None:
        self.service = service
        self.loop = service.loop
        self.poller: Poller = service.poller
        self.edge = self.poller.edge
        self.client = sock
        self.server: Optional[_socket.socket] = None
        self.peer = peer
        self.local = local
        self.state = CONNECTING
        #: When the current step (header, handshake, connect) must be done
        #: by, in the loop's time; 0.0 while relaying.
        self.deadline = 0.0
        #: Set whenever bytes move; the sweeper clears it.
        self.active = True
        #: When the sweeper last found :attr:`active` set.
        self.idle_since = 0.0
        self.acceptor: Optional[HeaderAcceptor] = None
        self.info: Optional[ConnectionInfo] = None
        self.client_tls: Optional[TLSLayer] = None
        self.server_tls: Optional[TLSLayer] = None
        self.tls_facts: Optional[TLSFacts] = None
        #: Plaintext from the client, for the destination, before relaying.
        self.early = b''
        #: Bytes waiting to be sent before relaying (handshakes, header).
        self.to_client: Optional[bytes] = None
        self.to_server: Optional[bytes] = None
        self.up: Optional[_Flow] = None
        self.down: Optional[_Flow] = None
        self.addr_index = 0
        self.started = time.monotonic()
        self.header_len = 0
        # Readiness seen before relaying.
        self.c_ready = False
        self.c_hup = False
        self.s_ready = False
        self.s_hup = False
        #: The DNSBL verdict on the client, when one was asked for.
        self.dnsbl: Optional[str] = None

    # -- events --------------------------------------------------------------

    def _client_event(self, events: int) -> None:
        state = self.state
        if state == RELAYING:
            if events & READ_EVENTS:
                up = self.up
                assert up is not None
                up.ready = True
                if events & _CLOSED_EVENTS:
                    up.hup = True
                if up.pending is None and not up.eof:
                    up.pump()
                    if self.state != RELAYING:
                        return
            if events & WRITE_EVENTS:
                down = self.down
                assert down is not None
                if down.pending is not None:
                    down.flush()
            return
        if events & WRITE_EVENTS and self.to_client is not None:
            self._flush(True)
            if self.state == CLOSED:
                return
        if events & READ_EVENTS:
            self.c_ready = True
            if events & _CLOSED_EVENTS:
                self.c_hup = True
            if state == HEADER:
                self._read_header()
            elif state == HANDSHAKE:
                self._read_handshake()

    def _server_event(self, events: int) -> None:
        state = self.state
        if state == RELAYING:
            if events & READ_EVENTS:
                down = self.down
                assert down is not None
                down.ready = True
                if events & _CLOSED_EVENTS:
                    down.hup = True
                if down.pending is None and not down.eof:
                    down.pump()
                    if self.state != RELAYING:
                        return
            if events & WRITE_EVENTS:
                up = self.up
                assert up is not None
                if up.pending is not None:
                    up.flush()
            return
        if state == CONNECTING:
            if events & READ_EVENTS:
                self.s_ready = True
                if events & _CLOSED_EVENTS:
                    self.s_hup = True
            if events & WRITE_EVENTS:
                self._on_connect(events)
            return
        if events & WRITE_EVENTS and self.to_server is not None:
            self._flush(False)
            if self.state == CLOSED:
                return
        if events & READ_EVENTS and state == OUT_HANDSHAKE:
            self._read_out_handshake()

    def interest(self) -> None:
        """Tell a level-triggered poller what this relay waits for (an
        edge-triggered one reports everything anyway)."""
        if self.edge:
            return
        poller = self.poller
        state = self.state
        cfd = self.client.fileno()
        sfd = self.server.fileno() if self.server is not None else -1
        if state == RELAYING:
            up, down = self.up, self.down
            assert up is not None and down is not None
            poller.want(cfd, up.pending is None and not up.eof,
                        down.pending is not None)
            poller.want(sfd, down.pending is None and not down.eof,
                        up.pending is not None)
        elif state in (HEADER, HANDSHAKE):
            poller.want(cfd, True, self.to_client is not None)
        elif state == CONNECTING:
            poller.want(cfd, False, False)
            if sfd >= 0:
                poller.want(sfd, False, True)
        elif state == OUT_HANDSHAKE:
            poller.want(cfd, False, False)
            poller.want(sfd, True, self.to_server is not None)

    # -- start -------------------------------------------------------------

    def start(self) -> None:
        """Begin with whatever step the service needs first."""
        service = self.service
        fd = self.client.fileno()
        if service.header_config is not None:
            self.acceptor = HeaderAcceptor(
                service.header_config, socket_peername=self.peer,
                socket_sockname=self.local,
                socket_family=self.client.family)
            self.poller.register(fd, self._client_event, read=True)
            try:
                info = self.acceptor.start()
            except ProxyProtocolError as exc:
                self.refuse('header', exc)
                return
            if info is None:
                self.state = HEADER
                self.deadline = self.loop.time() + \
                    service.header_config.timeout
                self.interest()
                return
            self.info = info
        else:
            self.poller.register(
                fd, self._client_event,
                read=service.server_context is not None)
        self._after_header()

    def _read_header(self) -> None:
        acceptor = self.acceptor
        assert acceptor is not None
        while True:
            try:
                # Whatever follows the header is kept for the destination.
                data = self.client.recv(16384)
            except _AGAIN:
                self.c_ready = False
                return
            except OSError as exc:
                self.refuse('header', exc)
                return
            try:
                if not data:
                    acceptor.feed_eof()
                    return   # pragma: no cover - feed_eof raised
                outcome = acceptor.feed(data)
            except ProxyProtocolError as exc:
                self.refuse('header', exc)
                return
            if isinstance(outcome, ConnectionInfo):
                break
        self.info = outcome
        self.early = acceptor.trailing_data
        self._after_header()

    def _after_header(self) -> None:
        service = self.service
        if service.server_context is None:
            self.inbound_done()
            return
        self.state = HANDSHAKE
        self.deadline = self.loop.time() + service.handshake_timeout
        tls = self.client_tls = TLSLayer(service.server_context,
                                         server_side=True)
        self.interest()
        if self.early:
            tls.receive(self.early)
            self.early = b''
            if not self._handshake_step():
                return
        if self.c_ready:
            self._read_handshake()

    # -- TLS with the client ----------------------------------------------

    def _read_handshake(self) -> None:
        tls = self.client_tls
        assert tls is not None
        while self.state == HANDSHAKE:
            try:
                data = self.client.recv(65536)
            except _AGAIN:
                self.c_ready = False
                return
            except OSError as exc:
                self.refuse('TLS handshake', exc)
                return
            if not data:
                self.refuse('TLS handshake', ConnectionError(
                    'the client closed the connection during the handshake'))
                return
            tls.receive(data)
            if not self._handshake_step():
                return

    def _handshake_step(self) -> bool:
        """Advance the client handshake; False once it is over (done, and
        the connection moved on, or failed)."""
        tls = self.client_tls
        assert tls is not None
        try:
            done = tls.do_handshake()
        except ssl.SSLError as exc:
            # Send the alert if the socket takes it; then drop.
            try:
                self.client.send(tls.outgoing())
            except OSError:
                pass
            self.refuse('TLS handshake', exc)
            return False
        if not self._queue(True, tls.outgoing()):
            return False
        if not done:
            return True
        try:
            pieces = []
            while True:
                piece = tls.read()
                if not piece:
                    break
                pieces.append(piece)
        except ssl.SSLError as exc:
            self.refuse('TLS handshake', exc)
            return False
        self.early = b''.join(pieces)
        self.tls_facts = facts_from_ssl_object(tls.ssl_object,
                                               self.service.own_cert)
        self.inbound_done()
        return False

    def _queue(self, to_client: bool, data: bytes) -> bool:
        """Send bytes before relaying (handshake records, the header); what
        the socket cannot take at once waits for it. False when the
        connection failed (and is closed)."""
        if not data:
            return True
        sock = self.client if to_client else self.server
        assert sock is not None
        waiting = self.to_client if to_client else self.to_server
        sent = 0
        if waiting:
            data = waiting + data
        else:
            try:
                sent = sock.send(data)
            except _AGAIN:
                pass
            except OSError as exc:
                if to_client:
                    self.refuse('TLS handshake', exc)
                else:
                    self.service.connect_failed(self, exc)
                    self.close(abort=True)
                return False
        rest = data[sent:] or None
        if to_client:
            self.to_client = rest
        else:
            self.to_server = rest
        if rest is not None and not waiting:
            self.interest()
        return True

    def _flush(self, to_client: bool) -> None:
        sock = self.client if to_client else self.server
        data = self.to_client if to_client else self.to_server
        assert sock is not None and data is not None
        try:
            sent = sock.send(data)
        except _AGAIN:
            return
        except OSError as exc:
            self.fail(exc, 'client' if to_client else 'server')
            return
        rest = data[sent:] or None
        if to_client:
            self.to_client = rest
        else:
            self.to_server = rest
        if rest is None:
            self.interest()

    # -- connect -----------------------------------------------------------

    def inbound_done(self) -> None:
        """The client side is ready (header read, TLS up): look the client
        up in the DNSBL when one is configured, then connect."""
        dnsbl = self.service.dnsbl
        if dnsbl is None:
            self.connect()
            return
        self.state = CONNECTING
        self.deadline = self.loop.time() + self.service.connect_timeout + \
            getattr(dnsbl, 'timeout', 0.0)
        self.interest()
        task = self.loop.create_task(self.service.lookup(self))
        task.add_done_callback(self._looked_up)

    def _looked_up(self, task: 'asyncio.Task[Optional[str]]') -> None:
        if self.state == CLOSED:
            return
        if not task.cancelled() and task.exception() is None:
            self.dnsbl = task.result()
        self.connect()

    def connect(self) -> None:
        """Open the connection to the destination (the next address, when
        the one before failed)."""
        service = self.service
        self.state = CONNECTING
        self.deadline = self.loop.time() + service.connect_timeout
        addrs = service.destination_addresses
        last: Optional[OSError] = None
        while self.addr_index < len(addrs):
            family, sockaddr = addrs[self.addr_index]
            self.addr_index += 1
            try:
                sock = _socket.socket(
                    family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            except OSError as exc:
                last = exc
                break
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(sockaddr)
            if err in (0, errno.EINPROGRESS):
                self.server = sock
                self.s_ready = self.s_hup = False
                self.poller.register(sock.fileno(), self._server_event,
                                     write=True)
                self.interest()
                return
            sock.close()
            last = OSError(err, os.strerror(err))
        assert last is not None
        service.connect_failed(self, last)
        self.close(abort=True)

    def _on_connect(self, events: int) -> None:
        sock = self.server
        assert sock is not None
        # An edge-triggered poller reports a failed connect with ERR/HUP;
        # only then (or with a level-triggered one) is SO_ERROR needed.
        err = sock.getsockopt(SOL_SOCKET, SO_ERROR) \
            if not self.edge or events & (ERR | HUP) else 0
        if err:
            self.poller.forget(sock.fileno())
            sock.close()
            self.server = None
            if self.addr_index < len(self.service.destination_addresses):
                self.connect()
                return
            self.service.connect_failed(self, OSError(err, os.strerror(err)))
            self.close(abort=True)
            return
        service = self.service
        info = self.info
        forwarded = info.result if info is not None and info.proxied else None
        try:
            header = service.headers.build(self.peer, self.local,
                                           tls=self.tls_facts,
                                           forwarded=forwarded,
                                           dnsbl=self.dnsbl)
        except ValueError as exc:
            _log.error('%s: cannot write the header: %s', self.describe(),
                       exc)
            self.close(abort=True)
            return
        self.header_len = len(header)
        if service.client_context is None:
            self._relay(header)
            return
        self.state = OUT_HANDSHAKE
        self.interest()
        tls = self.server_tls = TLSLayer(
            service.client_context, server_side=False,
            server_hostname=service.server_hostname)
        try:
            tls.do_handshake()
        except ssl.SSLError as exc:   # pragma: no cover - nothing read yet
            service.connect_failed(self, exc)
            self.close(abort=True)
            return
        if self._queue(False, header + tls.outgoing()) and self.s_ready:
            self._read_out_handshake()

    def _read_out_handshake(self) -> None:
        sock, tls = self.server, self.server_tls
        assert sock is not None and tls is not None
        while self.state == OUT_HANDSHAKE:
            try:
                data = sock.recv(65536)
            except _AGAIN:
                self.s_ready = False
                return
            except OSError as exc:
                self.service.connect_failed(self, exc)
                self.close(abort=True)
                return
            if not data:
                self.service.connect_failed(self, ConnectionError(
                    'the destination closed the connection during the TLS '
                    'handshake'))
                self.close(abort=True)
                return
            tls.receive(data)
            try:
                done = tls.do_handshake()
            except ssl.SSLError as exc:
                self.service.connect_failed(self, exc)
                self.close(abort=True)
                return
            if not self._queue(False, tls.outgoing()):
                return
            if done:
                self._relay(b'')

    # -- relaying ----------------------------------------------------------

    def _relay(self, header: bytes) -> None:
        client, server = self.client, self.server
        assert server is not None
        self.state = RELAYING
        self.deadline = 0.0
        up = self.up = _Flow(self, client, server, self.client_tls,
                             self.server_tls, 'client')
        down = self.down = _Flow(self, server, client, self.server_tls,
                                 self.client_tls, 'server')
        up.ready, up.hup = self.c_ready, self.c_hup
        down.ready, down.hup = self.s_ready, self.s_hup
        self.service.relay_started(self)
        if self.to_client:
            # The end of the client handshake (session tickets) still waits.
            down.pending = self.to_client
            self.to_client = None
        # What is already there goes out in one segment: handshake records
        # still waiting, the header, the bytes that followed the inbound
        # header or handshake, and (plain clients) what the client sent
        # while we connected.
        data = header
        if self.to_server:
            data = self.to_server + data
            self.to_server = None
        if self.early:
            early = self.early
            self.early = b''
            if self.server_tls is not None:
                self.server_tls.write(early)
                early = self.server_tls.outgoing()
            data += early
        if self.client_tls is None and self.server_tls is None \
                and (up.ready or not self.edge):
            try:
                n = client.recv_into(_buf)
            except _AGAIN:
                up.ready = False
            except OSError as exc:
                self.fail(exc, 'client')
                return
            else:
                if n:
                    data += _view[:n]
                    up.count += n
                    if n < _buf_len and not up.hup:
                        up.ready = False
                else:
                    up.ready = False
                    up.eof = True
        if data:
            try:
                sent = server.send(data)
            except _AGAIN:
                sent = 0
            except OSError as exc:
                self.fail(exc, 'server')
                return
            if sent < len(data):
                up.pending = data[sent:]
        self.interest()
        if up.eof:
            up.at_eof()
        elif up.ready and up.pending is None:
            up.pump()
        if self.state == RELAYING and down.ready and down.pending is None:
            down.pump()

    def flow_to(self, sock: _socket.socket) -> _Flow:
        """The direction that writes to ``sock``."""
        assert self.up is not None and self.down is not None
        return self.up if self.up.dst is sock else self.down

    def flow_done(self) -> None:
        """A direction has ended; close once both have."""
        up, down = self.up, self.down
        if up is not None and down is not None and up.done and down.done:
            self.close()

    # -- the end -----------------------------------------------------------

    def refuse(self, step: str, exc: BaseException) -> None:
        """Drop a connection that failed before relaying (bad header,
        policy, TLS)."""
        self.service.refused(self, step, exc)
        self.close(abort=True)

    def fail(self, exc: BaseException, side: str) -> None:
        """An error on one side while relaying: reset both."""
        if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
            _log.debug('%s: %s side reset (%s)', self.describe(), side, exc)
        else:
            _log.info('%s: %s side failed: %s', self.describe(), side, exc)
        self.close(abort=True)

    def timed_out(self) -> None:
        """The sweeper found the current step overdue, or the connection
        idle for too long."""
        state = self.state
        if state == RELAYING:
            _log.debug('%s: idle timeout', self.describe())
        elif state == HEADER and self.acceptor is not None:
            self.service.refused(self, 'header',
                                 self.acceptor.timeout_error())
        else:
            self.service.timed_out(self, STATE_NAMES[state])
        self.close(abort=state != RELAYING)

    def close(self, abort: bool = False) -> None:
        """Close both sockets (resetting them with ``abort``)."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        poller = self.poller
        for sock in (self.client, self.server):
            if sock is None:
                continue
            fd = sock.fileno()
            if fd >= 0:
                poller.forget(fd)
                if abort:
                    _abort(sock)
            sock.close()
        for flow in (self.up, self.down):
            if flow is not None:
                flow.close_pipe()
        self.service.relay_closed(self)

    def describe(self) -> str:
        """``client -> local`` for logs."""
        return f'{format_address(self.peer)} -> {format_address(self.local)}'


def format_address(address: Any) -> str:
    """``host:port``, ``[v6]:port`` or ``unix:path`` for logs."""
    if isinstance(address, tuple):
        host = str(address[0])
        return f'[{host}]:{address[1]}' if ':' in host else \
            f'{host}:{address[1]}'
    text = address.decode('utf-8', 'replace') \
        if isinstance(address, bytes) else str(address or '')
    if not text:
        return 'unix:(unnamed)'
    return 'unix:' + (('@' + text[1:]) if text.startswith('\x00') else text)
