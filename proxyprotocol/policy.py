"""Who may send a PROXY protocol header, and how a server reads it.

:class:`HeaderConfig` is the one configuration object every server adapter
takes (asyncio streams and protocols, blocking sockets, socketserver). It is
immutable and validated when built. For each connection the adapter asks it
for a :class:`Policy`, decided from the *real* socket peer (never from
anything the peer sent):

* a peer in the :attr:`~HeaderConfig.trusted` allowlist gets
  :attr:`~HeaderConfig.trusted_policy` (by default :attr:`Policy.REQUIRE`);
* any other peer gets :attr:`~HeaderConfig.untrusted_policy` (by default
  :attr:`Policy.REJECT`).

The spec (section 1) asks receivers to accept the protocol only from trusted
proxies and never to guess whether a header is there; the defaults do both.
A header from an untrusted peer is never parsed, so it can never become the
reported client address.

"""

from __future__ import annotations

import socket
from enum import Enum
from ipaddress import (IPv4Address, IPv4Network, IPv6Address, IPv6Network,
                       ip_address, ip_network)
from typing import Any, Final, Iterable, Optional, Union

from .header import DEFAULT_MAX_LENGTH

__all__ = ['Policy', 'HeaderConfig', 'TrustedPeer', 'UNIX',
           'DEFAULT_TIMEOUT', 'DEFAULT_TRUSTED', 'DEFAULT_CONFIG',
           'DEFAULT_MAX_LENGTH']

#: How long a server waits for a complete header, in seconds. The spec
#: (section 1) asks receivers that time out to wait at least 3 seconds, "to
#: cover a TCP retransmit". With the standard initial retransmission timeout
#: of 1 s (RFC 6298), 5 s leaves room for the header's segment to be lost
#: twice (resent after 1 s, then after 2 s more) plus the round trip, while
#: a client that stalls is still dropped quickly.
DEFAULT_TIMEOUT: Final = 5.0

#: The allowlist entry that trusts every peer of a UNIX socket (access to a
#: UNIX socket is already guarded by file permissions, and its peers have no
#: address to check).
UNIX: Final = 'unix'

#: One allowlist entry: a network, or :data:`UNIX`.
TrustedPeer = Union[IPv4Network, IPv6Network, str]

#: The default allowlist: loopback (a proxy on the same host) and UNIX
#: sockets. Any other proxy must be listed explicitly.
DEFAULT_TRUSTED: Final[tuple[TrustedPeer, ...]] = (
    IPv4Network('127.0.0.0/8'), IPv6Network('::1/128'), UNIX)


class Policy(Enum):
    """What a server does with one connection, chosen from its real peer."""

    #: A valid header must come first. No header, a malformed one, end of
    #: stream or a timeout before it is whole: the connection is dropped.
    REQUIRE = 'require'

    #: Use a header if the first bytes start one; otherwise the bytes are
    #: the application's and the socket peer is the client. This guesses,
    #: which the spec forbids for a shared port (section 1): use it only for
    #: trusted peers, while migrating proxies to the protocol.
    OPTIONAL = 'optional'

    #: Do not look for a header: every byte is the application's, and the
    #: socket peer is the client. A header sent anyway reaches the
    #: application as data (and is never believed).
    IGNORE = 'ignore'

    #: Refuse the connection: close it without reading anything.
    REJECT = 'reject'

    @property
    def reads_header(self) -> bool:
        """Whether a header is looked for at all."""
        return self in (Policy.REQUIRE, Policy.OPTIONAL)


def _policy(value: Union[Policy, str], name: str) -> Policy:
    if isinstance(value, Policy):
        return value
    try:
        return Policy(str(value).lower())
    except ValueError:
        raise ValueError(f'{name} must be one of '
                         f'{", ".join(p.value for p in Policy)}, '
                         f'not {value!r}') from None


def _trusted(entries: Iterable[Union[TrustedPeer, IPv4Address, IPv6Address]]
             ) -> tuple[tuple[TrustedPeer, ...], bool]:
    if isinstance(entries, (str, bytes, IPv4Network, IPv6Network)):
        raise TypeError('trusted must be a collection of networks, '
                        f'not a single {type(entries).__name__}')
    networks: list[TrustedPeer] = []
    unix = False
    for entry in entries:
        if isinstance(entry, (IPv4Network, IPv6Network)):
            network: TrustedPeer = entry
        elif isinstance(entry, (IPv4Address, IPv6Address)):
            network = ip_network(entry)
        elif isinstance(entry, str) and entry.lower() == UNIX:
            unix = True
            network = UNIX
        elif isinstance(entry, str):
            try:
                network = ip_network(entry, strict=True)
            except ValueError as exc:
                raise ValueError(f'invalid trusted network {entry!r}: '
                                 f'{exc}') from None
        else:
            raise TypeError(f'invalid trusted network {entry!r}')
        if network not in networks:
            networks.append(network)
    return tuple(networks), unix


def _peer_ip(peername: Any) -> Optional[Union[IPv4Address, IPv6Address]]:
    if not isinstance(peername, tuple) or not peername:
        return None
    host = peername[0]
    if not isinstance(host, str):
        return None
    try:
        # Link-local IPv6 peers carry a "%scope" suffix.
        return ip_address(host.split('%', 1)[0])
    except ValueError:
        return None


class HeaderConfig:
    """How a server reads PROXY protocol headers: one validated object.

    Args:
        trusted: The allowlist of proxies: networks (``'10.0.0.0/8'``,
            ``'2001:db8::/32'``, :mod:`ipaddress` networks or single
            addresses) and :data:`UNIX` for every UNIX socket peer. An
            IPv4-mapped IPv6 peer (``::ffff:a.b.c.d``) also matches IPv4
            networks. Default: loopback and UNIX sockets.
        trusted_policy: The :class:`Policy` for trusted peers.
        untrusted_policy: The :class:`Policy` for every other peer:
            :attr:`Policy.IGNORE` or :attr:`Policy.REJECT`, as a header
            from an untrusted peer must never be believed.
        versions: The header versions accepted, from 1 and 2.
        timeout: Seconds allowed for the whole header to arrive, counted
            from the connection (:data:`DEFAULT_TIMEOUT`).
        max_length: The longest v2 header accepted, in bytes (v1 lines are
            capped at 107 bytes by the spec).

    Raises:
        ValueError: A value is out of range or not understood.
        TypeError: ``trusted`` is not a collection of networks.

    """

    __slots__ = ('_trusted', '_trust_unix', '_trusted_policy',
                 '_untrusted_policy', '_versions', '_timeout', '_max_length')

    def __init__(self, *,
                 trusted: Iterable[Union[TrustedPeer, str,
                                         IPv4Address, IPv6Address]]
                 = DEFAULT_TRUSTED,
                 trusted_policy: Union[Policy, str] = Policy.REQUIRE,
                 untrusted_policy: Union[Policy, str] = Policy.REJECT,
                 versions: Iterable[int] = (1, 2),
                 timeout: float = DEFAULT_TIMEOUT,
                 max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._trusted, self._trust_unix = _trusted(trusted)
        self._trusted_policy = _policy(trusted_policy, 'trusted_policy')
        self._untrusted_policy = _policy(untrusted_policy, 'untrusted_policy')
        if self._untrusted_policy.reads_header:
            raise ValueError(
                'untrusted_policy must be ignore or reject: a header from an '
                'untrusted peer is never believed (list trusted proxies in '
                'trusted=..., e.g. "0.0.0.0/0" and "::/0" for every peer)')
        versions = tuple(sorted(set(versions)))
        if not versions or not set(versions) <= {1, 2}:
            raise ValueError(f'versions must be drawn from 1 and 2, not '
                             f'{versions!r}')
        self._versions = versions
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout < float('inf'):
            raise ValueError(f'timeout must be a positive number of seconds, '
                             f'not {timeout!r}')
        self._timeout = float(timeout)
        if isinstance(max_length, bool) or not isinstance(max_length, int) \
                or max_length < 16:
            raise ValueError(f'max_length must be an int of at least 16, '
                             f'not {max_length!r}')
        self._max_length = max_length

    @property
    def trusted(self) -> tuple[TrustedPeer, ...]:
        """The allowlist: networks, and :data:`UNIX` if UNIX peers are
        trusted."""
        return self._trusted

    @property
    def trusted_policy(self) -> Policy:
        """The policy for peers in :attr:`trusted`."""
        return self._trusted_policy

    @property
    def untrusted_policy(self) -> Policy:
        """The policy for every other peer."""
        return self._untrusted_policy

    @property
    def versions(self) -> tuple[int, ...]:
        """The header versions accepted."""
        return self._versions

    @property
    def timeout(self) -> float:
        """Seconds allowed for the whole header to arrive."""
        return self._timeout

    @property
    def max_length(self) -> int:
        """The longest v2 header accepted, in bytes."""
        return self._max_length

    def is_trusted(self, peername: Any,
                   family: Optional[int] = None) -> bool:
        """Whether the real socket peer ``peername`` is in the allowlist.

        Args:
            peername: The address as ``getpeername()`` gives it.
            family: The socket's family, when known; a UNIX socket is
                recognized from it or from a ``str``/``bytes`` address.

        """
        unix_family = getattr(socket, 'AF_UNIX', None)
        if (family is not None and family == unix_family) \
                or isinstance(peername, (str, bytes, bytearray)):
            return self._trust_unix
        ip = _peer_ip(peername)
        if ip is None:
            return False
        mapped = ip.ipv4_mapped if isinstance(ip, IPv6Address) else None
        for network in self._trusted:
            if isinstance(network, str):
                continue
            if ip in network or (mapped is not None and mapped in network):
                return True
        return False

    def policy_for(self, peername: Any,
                   family: Optional[int] = None) -> Policy:
        """The policy for a connection from the real peer ``peername``."""
        if self.is_trusted(peername, family):
            return self._trusted_policy
        return self._untrusted_policy

    def replace(self, **changes: Any) -> HeaderConfig:
        """A copy with some settings changed (validated again)."""
        values: dict[str, Any] = {
            'trusted': self._trusted, 'trusted_policy': self._trusted_policy,
            'untrusted_policy': self._untrusted_policy,
            'versions': self._versions, 'timeout': self._timeout,
            'max_length': self._max_length}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f'unknown settings: {", ".join(sorted(unknown))}')
        values.update(changes)
        return HeaderConfig(**values)

    def _key(self) -> tuple[Any, ...]:
        return (self._trusted, self._trusted_policy, self._untrusted_policy,
                self._versions, self._timeout, self._max_length)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderConfig):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, '_max_length'):
            raise AttributeError(f'{type(self).__name__} is immutable')
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        trusted = tuple(str(t) for t in self._trusted)
        return (f'HeaderConfig(trusted={trusted!r}, '
                f'trusted_policy={self._trusted_policy.value!r}, '
                f'untrusted_policy={self._untrusted_policy.value!r}, '
                f'versions={self._versions!r}, timeout={self._timeout!r}, '
                f'max_length={self._max_length!r})')


#: The defaults: a header is required from loopback and UNIX peers; any
#: other peer is refused.
DEFAULT_CONFIG: Final = HeaderConfig()
