"""What the framework integrations share: settings from the environment and
a socket view that reports the addresses the header gave
(:class:`ProxiedSocket`, which lives in :mod:`proxyprotocol.aio.sockview`
and is kept here under its earlier name)."""

from __future__ import annotations

import os
import ssl
from typing import Any, Final, Mapping, Optional, Sequence

from ..aio.sockview import ProxiedSocket
from ..policy import DEFAULT_CONFIG, UNIX, HeaderConfig
from ..typing import SockAddr

__all__ = ['ENV_PREFIX', 'EVERYONE', 'ProxiedSocket', 'config_from_env',
           'ssl_context_from_env', 'two_tuple']

#: The prefix of the environment variables read by :func:`config_from_env`
#: and :func:`ssl_context_from_env`.
ENV_PREFIX: Final = 'PROXYPROTOCOL_'

#: The allowlist that trusts every peer (what ``*`` stands for, as in
#: uvicorn's and gunicorn's own allowlists). Only for a port that nothing but
#: the proxies can reach.
EVERYONE: Final = ('0.0.0.0/0', '::/0', UNIX)


def _split(value: str) -> list[str]:
    return [item for item in value.replace(',', ' ').split() if item]


def trusted_from_strings(entries: Sequence[str]) -> tuple[str, ...]:
    """An allowlist from strings, where ``*`` means every peer."""
    if '*' in entries:
        return EVERYONE
    return tuple(entries)


def config_from_env(environ: Optional[Mapping[str, str]] = None, *,
                    base: HeaderConfig = DEFAULT_CONFIG,
                    prefix: str = ENV_PREFIX) -> HeaderConfig:
    """A :class:`~proxyprotocol.policy.HeaderConfig` from environment
    variables, for servers started from their own command line.

    Each variable that is set (and not empty, except ``TRUSTED``) replaces
    one setting of ``base``:

    ``PROXYPROTOCOL_TRUSTED``
        Trusted proxies: networks and ``unix``, separated by commas or
        spaces; ``*`` trusts every peer; empty trusts none.
    ``PROXYPROTOCOL_TRUSTED_POLICY`` / ``PROXYPROTOCOL_UNTRUSTED_POLICY``
        ``require``, ``optional``, ``ignore`` or ``reject``.
    ``PROXYPROTOCOL_VERSIONS``
        ``1``, ``2`` or ``1,2``.
    ``PROXYPROTOCOL_TIMEOUT``
        Seconds allowed for the header.
    ``PROXYPROTOCOL_MAX_LENGTH``
        The longest header accepted, in bytes.

    Raises:
        ValueError: A variable's value is invalid (the message names it).

    """
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}

    def get(name: str) -> Optional[str]:
        value = env.get(prefix + name)
        return None if value is None else value.strip()

    def number(name: str, kind: type[Any]) -> Any:
        value = get(name)
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f'{prefix}{name}: not a number: '
                             f'{value!r}') from None

    trusted = get('TRUSTED')
    if trusted is not None:
        changes['trusted'] = trusted_from_strings(_split(trusted))
    for name in ('TRUSTED_POLICY', 'UNTRUSTED_POLICY'):
        value = get(name)
        if value:
            changes[name.lower()] = value
    versions = get('VERSIONS')
    if versions:
        try:
            changes['versions'] = tuple(int(v) for v in _split(versions))
        except ValueError:
            raise ValueError(f'{prefix}VERSIONS: expected 1, 2 or 1,2, not '
                             f'{versions!r}') from None
    if get('TIMEOUT'):
        changes['timeout'] = number('TIMEOUT', float)
    if get('MAX_LENGTH'):
        changes['max_length'] = number('MAX_LENGTH', int)
    if not changes:
        return base
    try:
        return base.replace(**changes)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{prefix}*: {exc}') from None


def ssl_context_from_env(environ: Optional[Mapping[str, str]] = None, *,
                         alpn_protocols: Optional[Sequence[str]] = None,
                         prefix: str = ENV_PREFIX
                         ) -> Optional[ssl.SSLContext]:
    """A server TLS context for TLS *after* the header, from environment
    variables; None when ``PROXYPROTOCOL_SSL_CERTFILE`` is not set.

    ``PROXYPROTOCOL_SSL_CERTFILE``
        The certificate chain (PEM), possibly with the key.
    ``PROXYPROTOCOL_SSL_KEYFILE``
        The private key, when not in the certificate file.
    ``PROXYPROTOCOL_SSL_CA_CERTS``
        CA certificates: when set, clients must present a certificate
        signed by one of them.

    Raises:
        ValueError: A key or CA file is given without a certificate.
        OSError, ssl.SSLError: A file cannot be read or used.

    """
    env = os.environ if environ is None else environ
    certfile = env.get(prefix + 'SSL_CERTFILE') or None
    keyfile = env.get(prefix + 'SSL_KEYFILE') or None
    ca_certs = env.get(prefix + 'SSL_CA_CERTS') or None
    if certfile is None:
        if keyfile or ca_certs:
            raise ValueError(f'{prefix}SSL_KEYFILE and {prefix}SSL_CA_CERTS '
                             f'need {prefix}SSL_CERTFILE')
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if ca_certs:
        context.load_verify_locations(cafile=ca_certs)
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


def two_tuple(address: SockAddr) -> SockAddr:
    """An IP address as ``(host, port)``, as most frameworks expect; other
    addresses unchanged."""
    if isinstance(address, tuple) and len(address) > 2:
        return (address[0], address[1])
    return address
