"""The server side of one connection, sans-I/O: policy, then the header.

A :class:`HeaderAcceptor` is made for each accepted connection from the
:class:`~proxyprotocol.policy.HeaderConfig` and the *real* socket addresses.
It applies the policy the config gives for that peer, takes the bytes that
arrive, and ends with a :class:`ConnectionInfo`: the socket's own addresses
and, separately, what the header said. Every adapter (asyncio streams and
protocols, blocking sockets) is a thin loop around it, so they all enforce
the same rules: one header per connection, the size cap, end of stream
before a whole header is an error, and (in the adapters) the timeout.

"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from socket import AddressFamily
from typing import Any, Final, Optional, Union

from .errors import NeedMore, ProxyProtocolError
from .header import HeaderParser, ParsedHeader
from .policy import DEFAULT_CONFIG, HeaderConfig, Policy
from .result import ProxyResult, ProxyResultType
from .tlv import EMPTY_TLV, ProxyProtocolTLV
from .typing import Buffer, SockAddr
from .v2 import V2_SIGNATURE

__all__ = ['ConnectionInfo', 'HeaderAcceptor', 'ProxyProtocolEOFError',
           'ProxyProtocolTimeoutError', 'ProxyProtocolRejectedError']

_V1_SIGNATURE: Final = b'PROXY '
_ADDRESSED: Final = frozenset((ProxyResultType.IPv4, ProxyResultType.IPv6,
                               ProxyResultType.UNIX))


class ProxyProtocolEOFError(ProxyProtocolError, asyncio.IncompleteReadError):
    """The connection ended (or was reset) before the header was whole.

    It is also an :class:`asyncio.IncompleteReadError` (hence an
    :class:`EOFError`), which 0.11's reader raised in this case, so code
    written for 0.11 still catches it.

    Args:
        partial: The bytes of the header received before the end.

    """

    def __init__(self, partial: bytes = b'', message: str = '') -> None:
        ProxyProtocolError.__init__(
            self, message or f'the connection ended after {len(partial)} '
            'bytes, before the PROXY protocol header was complete')
        self.partial = partial
        self.expected: Optional[int] = None

    def __reduce__(self) -> Any:
        return (type(self), (self.partial, str(self)))


class ProxyProtocolTimeoutError(ProxyProtocolError, TimeoutError):
    """The header was not complete within the configured timeout.

    Also a :class:`TimeoutError` (which is :class:`asyncio.TimeoutError`
    from Python 3.11).

    """


class ProxyProtocolRejectedError(ProxyProtocolError):
    """The policy for this peer is :attr:`~proxyprotocol.policy.Policy.REJECT`.

    Args:
        peername: The real socket peer that was refused.

    """

    def __init__(self, peername: Any = None, message: str = '') -> None:
        super().__init__(message or f'connection from {peername!r} refused '
                         'by the PROXY protocol policy')
        self.peername = peername


@dataclass(frozen=True)
class ConnectionInfo:
    """What is known about one accepted connection.

    The real socket addresses and the header's claims are kept apart:
    ``socket_peername`` is who actually connected (the proxy, usually), and
    :attr:`peername` is the client the connection stands for, which comes
    from the header only when a trusted peer sent one with addresses.

    """

    __slots__ = ('socket_peername', 'socket_sockname', 'socket_family',
                 'trusted', 'policy', 'header', 'initial_data')

    #: The real peer, as ``getpeername()`` gives it.
    socket_peername: SockAddr
    #: The real local address, as ``getsockname()`` gives it.
    socket_sockname: SockAddr
    #: The real socket's family, when known.
    socket_family: Optional[AddressFamily]
    #: Whether the real peer is in the allowlist.
    trusted: bool
    #: The policy applied to this connection.
    policy: Policy
    #: The header read, or None when none was read.
    header: Optional[ParsedHeader]
    #: With :attr:`Policy.OPTIONAL` and no header: the first bytes, which
    #: showed that no header was there. The protocol adapters deliver them
    #: to the application as its first data; the StreamReader helper cannot
    #: put them back, so they are only here. Empty in every other case.
    initial_data: bytes

    @property
    def result(self) -> Optional[ProxyResult]:
        """What the header said, or None when no header was read."""
        header = self.header
        return None if header is None else header.result

    @property
    def version(self) -> Optional[int]:
        """The header's version (1 or 2), or None."""
        header = self.header
        return None if header is None else header.version

    @property
    def tlv(self) -> ProxyProtocolTLV:
        """The header's TLVs (empty without a v2 header)."""
        header = self.header
        return EMPTY_TLV if header is None else header.result.tlv

    @property
    def proxied(self) -> bool:
        """Whether the header gave the original addresses.

        False without a header, and for LOCAL (health checks) and UNKNOWN
        headers, which tell the receiver to use the real connection's
        addresses (spec sections 2.1 and 2.2).

        """
        header = self.header
        return header is not None and header.result.type in _ADDRESSED

    @property
    def peername(self) -> SockAddr:
        """The client: from the header when :attr:`proxied`, else the
        socket peer."""
        if self.proxied:
            assert self.header is not None
            return self.header.result.peername
        return self.socket_peername

    @property
    def sockname(self) -> SockAddr:
        """The address the client connected to: from the header when
        :attr:`proxied`, else the local socket address."""
        if self.proxied:
            assert self.header is not None
            return self.header.result.sockname
        return self.socket_sockname

    @property
    def family(self) -> Optional[AddressFamily]:
        """The family of :attr:`peername`."""
        if self.proxied:
            assert self.header is not None
            return self.header.result.family
        return self.socket_family


def _family(value: Optional[int]) -> Optional[AddressFamily]:
    if value is None:
        return None
    try:
        return AddressFamily(value)
    except ValueError:
        return None


class HeaderAcceptor:
    """Apply the policy and read the header of one connection, sans-I/O.

    Call :meth:`start` once; if it returns None, feed received bytes with
    :meth:`feed` until it returns the :class:`ConnectionInfo`, and call
    :meth:`feed_eof` at end of stream. After that,
    :attr:`trailing_data` holds the bytes that followed the header (or, for
    a connection found to have no header, every byte fed), which belong to
    the application.

    Args:
        config: The header configuration.
        socket_peername: The real peer (``getpeername()``).
        socket_sockname: The real local address (``getsockname()``).
        socket_family: The socket's family, when known.

    """

    __slots__ = ('_config', '_peername', '_sockname', '_family', '_trusted',
                 '_policy', '_parser', '_detect', '_want', '_info',
                 '_trailing', '_started', '_partial')

    def __init__(self, config: HeaderConfig = DEFAULT_CONFIG, *,
                 socket_peername: SockAddr = None,
                 socket_sockname: SockAddr = None,
                 socket_family: Optional[int] = None) -> None:
        self._config = config
        self._peername = socket_peername
        self._sockname = socket_sockname
        self._family = _family(socket_family)
        self._trusted = config.is_trusted(socket_peername, socket_family)
        self._policy = config.trusted_policy if self._trusted \
            else config.untrusted_policy
        self._parser: Optional[HeaderParser] = None
        self._detect: Optional[bytearray] = None
        self._want: NeedMore = NeedMore(8)
        self._info: Optional[ConnectionInfo] = None
        self._trailing = b''
        self._started = False
        self._partial = bytearray()

    @classmethod
    def for_socket(cls, config: HeaderConfig, sock: socket.socket
                   ) -> HeaderAcceptor:
        """An acceptor for a connected socket's real addresses."""
        return cls(config, socket_peername=sock.getpeername(),
                   socket_sockname=sock.getsockname(),
                   socket_family=sock.family)

    @property
    def config(self) -> HeaderConfig:
        """The configuration in force."""
        return self._config

    @property
    def policy(self) -> Policy:
        """The policy chosen for this peer."""
        return self._policy

    @property
    def trusted(self) -> bool:
        """Whether the real peer is in the allowlist."""
        return self._trusted

    @property
    def info(self) -> Optional[ConnectionInfo]:
        """The outcome, once known."""
        return self._info

    @property
    def trailing_data(self) -> bytes:
        """The application's bytes received with or after the header."""
        return self._trailing

    @property
    def want(self) -> NeedMore:
        """What a byte-exact reader should read next.

        ``want_bytes`` bytes can always be read without going past the
        header; ``want_line`` means "through the next ``\\n``" (v1), which
        a reader must do without reading past it (peek, or read a byte at
        a time).

        """
        return self._want

    def start(self) -> Optional[ConnectionInfo]:
        """Apply the policy, before reading anything.

        Returns:
            The outcome when no header is to be read
            (:attr:`Policy.IGNORE`), else None.

        Raises:
            ProxyProtocolRejectedError: The policy is :attr:`Policy.REJECT`.

        """
        if self._started:
            return self._info
        self._started = True
        policy = self._policy
        if policy is Policy.REJECT:
            raise ProxyProtocolRejectedError(self._peername)
        if policy is Policy.IGNORE:
            return self._finish(None)
        config = self._config
        self._parser = HeaderParser(versions=config.versions,
                                    max_length=config.max_length)
        if policy is Policy.OPTIONAL:
            self._detect = bytearray()
            self._want = NeedMore(1)
        return None

    def _finish(self, header: Optional[ParsedHeader],
                initial_data: bytes = b'') -> ConnectionInfo:
        self._info = info = ConnectionInfo(
            socket_peername=self._peername, socket_sockname=self._sockname,
            socket_family=self._family, trusted=self._trusted,
            policy=self._policy, header=header, initial_data=initial_data)
        return info

    def _signatures(self) -> list[bytes]:
        versions = self._config.versions
        sigs = []
        if 1 in versions:
            sigs.append(_V1_SIGNATURE)
        if 2 in versions:
            sigs.append(V2_SIGNATURE)
        return sigs

    def feed(self, data: Buffer) -> Union[ConnectionInfo, NeedMore]:
        """Take received bytes.

        Returns:
            The outcome once known (further calls return it again and add
            to :attr:`trailing_data`), or what is still needed.

        Raises:
            ProxyProtocolRejectedError: The policy is :attr:`Policy.REJECT`.
            ProxyProtocolError: The bytes can never become a valid header.

        """
        if not self._started:
            info = self.start()
            if info is not None:
                self._trailing += bytes(data)
                return info
        info = self._info
        if info is not None:
            self._trailing += bytes(data)
            return info
        self._partial += data
        detect = self._detect
        if detect is not None:
            detect += data
            decided = self._detect_header(detect)
            if decided is None:
                return self._want
            self._detect = None
            if not decided:
                self._trailing = bytes(detect)
                return self._finish(None, self._trailing)
            data = bytes(detect)
        parser = self._parser
        assert parser is not None
        outcome = parser.feed(data)
        if isinstance(outcome, ParsedHeader):
            self._trailing = parser.trailing_data
            self._partial = bytearray()
            self._want = NeedMore(0)
            return self._finish(outcome)
        self._want = outcome
        return outcome

    def _detect_header(self, data: bytearray) -> Optional[bool]:
        # True: a header starts here; False: none does; None: undecided.
        missing = []
        for sig in self._signatures():
            size = min(len(data), len(sig))
            if data[:size] == sig[:size]:
                if len(data) >= len(sig):
                    return True
                missing.append(len(sig) - len(data))
        if not missing:
            return False
        self._want = NeedMore(min(missing))
        return None

    def feed_eof(self) -> None:
        """The stream ended (or was reset).

        Raises:
            ProxyProtocolEOFError: The header was not complete.

        """
        if self._info is not None:
            return
        raise ProxyProtocolEOFError(bytes(self._partial))

    def timeout_error(self) -> ProxyProtocolTimeoutError:
        """The error for a header that did not arrive in time."""
        received = len(self._partial)
        return ProxyProtocolTimeoutError(
            f'no complete PROXY protocol header within '
            f'{self._config.timeout:g} s ({received} bytes received)')
