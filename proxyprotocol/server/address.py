"""Endpoints of the reference servers, as written on their command lines.

One :class:`Address` is a place to listen on or connect to, with its options
in a query string::

    localhost:10007                 host and port (0.4 and 0.11)
    [::1]:10007                     IPv6 in brackets
    :10007                          every interface (listen side)
    127.0.0.1:10007?pp=v1           options after "?", "&" between them
    ssl://example.com:443?cafile=ca.pem          TLS
    unix:/run/app.sock              a UNIX socket (as in nginx)
    unix:@name                      Linux's abstract namespace
    /run/app.sock, ./app.sock       also UNIX sockets
    udp://:5353                     a UDP service (proxyprotocol-server and
                                    proxyprotocol-echo only forward/echo)

It is the 0.11 class of the same name (``url``, ``query``, ``server``,
``host``, ``port``, ``pp``, ``ssl``, ``str()``), grown to understand UNIX
sockets, UDP and the options of the reference servers, and to check them
all at once (:meth:`Address.check`) so that a command line fails with a
clear message before anything listens.

"""

from __future__ import annotations

import ssl as _ssl
from functools import cached_property
from typing import Final, Optional
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

from ..base import ProxyProtocol
from ..version import ProxyProtocolVersion

__all__ = ['Address', 'TLV_NAMES', 'DEFAULT_TLVS']

#: The TLVs the proxy server can add to a v2 header, by their option name.
TLV_NAMES: Final = ('crc32c', 'unique-id', 'ssl', 'alpn', 'authority')

#: Sent when a destination says nothing: every TLV that applies (SSL, ALPN
#: and AUTHORITY only apply when the server terminated TLS itself).
DEFAULT_TLVS: Final = frozenset(TLV_NAMES)

_SCHEMES: Final = frozenset(('', 'tcp', 'ssl', 'tls', 'unix', 'udp'))

_SERVER_OPTIONS: Final = frozenset((
    'pp', 'cert', 'key', 'cafile', 'capath', 'cadata', 'verify', 'alpn',
    'trusted', 'policy', 'untrusted', 'mode'))
_CLIENT_OPTIONS: Final = frozenset((
    'pp', 'cert', 'key', 'cafile', 'capath', 'cadata', 'verify', 'alpn',
    'sni', 'tlv'))

_VERIFY: Final = {
    'CERT_NONE': _ssl.CERT_NONE, 'NONE': _ssl.CERT_NONE,
    'CERT_OPTIONAL': _ssl.CERT_OPTIONAL, 'OPTIONAL': _ssl.CERT_OPTIONAL,
    'CERT_REQUIRED': _ssl.CERT_REQUIRED, 'REQUIRED': _ssl.CERT_REQUIRED,
}


class Address:
    """A place to listen on (``server=True``) or to connect to.

    Args:
        addr: The text, e.g. ``'localhost:10000?pp=v2'``.
        server: Whether this is a listening address; it decides how TLS
            options are read.

    """

    def __init__(self, addr: str, *, server: bool = False) -> None:
        super().__init__()
        self._text = addr
        self.server = server
        if addr.startswith(('/', './', '../')):
            addr = 'unix:' + addr
        url = urlsplit(addr)
        if url.scheme not in ('unix',) and (not url.scheme or not url.netloc):
            url = urlsplit('//' + addr)
        #: The parsed text (:func:`urllib.parse.urlsplit`).
        self.url: SplitResult = url
        #: The options: each name with the list of values given.
        self.query: dict[str, list[str]] = parse_qs(url.query)

    def _option(self, name: str) -> Optional[str]:
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def scheme(self) -> str:
        """``''`` (plain TCP), ``'ssl'``, ``'unix'`` or ``'udp'``."""
        scheme = self.url.scheme.lower()
        return {'tcp': '', 'tls': 'ssl'}.get(scheme, scheme)

    @property
    def is_unix(self) -> bool:
        """Whether this is a UNIX socket."""
        return self.scheme == 'unix'

    @property
    def is_udp(self) -> bool:
        """Whether this is a UDP service."""
        return self.scheme == 'udp'

    @property
    def path(self) -> Optional[str]:
        """The UNIX socket path (abstract names start with a NUL byte)."""
        if not self.is_unix:
            return None
        path = self.url.path
        if path.startswith('@'):
            return '\x00' + path[1:]
        return path

    @property
    def host(self) -> str:
        """The host name or IP address, lower case; ``''`` for none."""
        return self.url.hostname or ''

    @property
    def port(self) -> Optional[int]:
        """The port; None when missing or 0.

        Raises:
            ValueError: The port is not a number from 0 to 65535.

        """
        return self.url.port or None

    @property
    def bind_port(self) -> int:
        """The port to bind or connect to, 0 when none was given."""
        return self.url.port or 0

    @property
    def pp(self) -> ProxyProtocol:
        """The PROXY protocol implementation named by ``?pp=`` (default
        ``detect``).

        Raises:
            KeyError: The name is not noop, detect, v1 or v2.

        """
        return ProxyProtocolVersion.get(self._option('pp') or 'detect')

    @property
    def pp_name(self) -> Optional[str]:
        """The ``?pp=`` value, lower case, or None when not given."""
        name = self._option('pp')
        return name.lower() if name else None

    @property
    def tlvs(self) -> frozenset[str]:
        """The TLVs to send (``?tlv=crc32c,unique-id``; ``?tlv=none`` for
        none); :data:`DEFAULT_TLVS` when not given."""
        values = self.query.get('tlv')
        if values is None:
            return DEFAULT_TLVS
        names: set[str] = set()
        for value in values:
            names.update(n.strip().lower() for n in value.split(',')
                         if n.strip())
        names.discard('none')
        return frozenset(names)

    @property
    def alpn(self) -> list[str]:
        """The ALPN protocols to offer (``?alpn=h2,http/1.1``)."""
        value = self._option('alpn')
        return [p for p in value.split(',') if p] if value else []

    @property
    def sni(self) -> Optional[str]:
        """The name to send and check on a TLS destination: ``?sni=``,
        else the host."""
        return self._option('sni') or self.host or None

    @cached_property
    def ssl(self) -> Optional[_ssl.SSLContext]:
        """The TLS context for ``ssl://`` addresses, else None. Built once.

        A listening address needs ``cert=`` (and ``key=`` unless the key is
        in the same file); ``verify=`` (``CERT_OPTIONAL``/``CERT_REQUIRED``)
        asks clients for a certificate checked against ``cafile``/
        ``capath``. A destination checks the server's certificate and name
        unless ``verify=CERT_NONE``; ``cert=`` presents a client
        certificate.

        Raises:
            KeyError: ``cert=`` is missing on a listening address, or
                ``verify=`` is not a verify mode.
            OSError, ssl.SSLError: A file cannot be loaded.

        """
        if self.scheme != 'ssl':
            return None
        opt = self._option
        if self.server:
            ctx = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.query['cert'][-1], opt('key'))
        else:
            ctx = _ssl.create_default_context(_ssl.Purpose.SERVER_AUTH)
            cert = opt('cert')
            if cert is not None:
                ctx.load_cert_chain(cert, opt('key'))
        cafile, capath, cadata = opt('cafile'), opt('capath'), opt('cadata')
        if cafile or capath or cadata:
            ctx.load_verify_locations(cafile, capath, cadata)
        verify = opt('verify')
        if verify is not None:
            mode = _VERIFY[verify.upper()]
            if mode == _ssl.CERT_NONE:
                ctx.check_hostname = False
            ctx.verify_mode = mode
        alpn = self.alpn
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def check(self) -> None:
        """Check every part and option now.

        Raises:
            ValueError: With a message that names what is wrong.

        """
        text = self._text
        if self.url.scheme.lower() not in _SCHEMES:
            raise ValueError(f'{text!r}: unknown scheme {self.url.scheme!r} '
                             '(use ssl://, unix:, udp:// or none)')
        allowed = _SERVER_OPTIONS if self.server else _CLIENT_OPTIONS
        unknown = sorted(set(self.query) - allowed)
        if unknown:
            raise ValueError(f'{text!r}: unknown option(s) {", ".join(unknown)}'
                             f' (known: {", ".join(sorted(allowed))})')
        if self.is_unix:
            if not self.url.path:
                raise ValueError(f'{text!r}: the UNIX socket path is missing')
        else:
            if self.url.path:
                raise ValueError(f'{text!r}: unexpected {self.url.path!r} '
                                 '(write HOST:PORT, [IPV6]:PORT or unix:PATH)')
            try:
                port = self.url.port
            except ValueError:
                raise ValueError(f'{text!r}: the port must be a number from '
                                 '0 to 65535') from None
            netloc = self.url.netloc
            if ':' in netloc.rpartition(']')[2] and port is None:
                raise ValueError(f'{text!r}: the port is missing')
            if self.url.hostname is None and netloc.startswith('[') is False \
                    and netloc.count(':') > 1:
                raise ValueError(f'{text!r}: put an IPv6 address in brackets, '
                                 'e.g. [::1]:8080')
            if port is None and not self.server:
                raise ValueError(f'{text!r}: the port is missing')
            if not self.host and not self.server:
                raise ValueError(f'{text!r}: the host is missing')
        name = self.pp_name
        if name is not None and name not in ('noop', 'detect', 'v1', 'v2'):
            raise ValueError(f'{text!r}: pp={name!r} is not one of noop, '
                             'detect, v1, v2')
        if self.is_udp and name not in (None, 'v2', 'detect', 'noop'):
            raise ValueError(f'{text!r}: UDP carries only v2 headers')
        unknown = sorted(self.tlvs - DEFAULT_TLVS)
        if unknown:
            raise ValueError(f'{text!r}: unknown TLV(s) {", ".join(unknown)} '
                             f'(known: {", ".join(TLV_NAMES)}, none)')
        verify = self._option('verify')
        if verify is not None and verify.upper() not in _VERIFY:
            raise ValueError(f'{text!r}: verify={verify!r} is not one of '
                             'CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED')
        tls_only = sorted(set(self.query) & {
            'cert', 'key', 'cafile', 'capath', 'cadata', 'verify', 'alpn',
            'sni'})
        if self.scheme != 'ssl' and tls_only:
            raise ValueError(f'{text!r}: {", ".join(tls_only)} only apply to '
                             'ssl:// addresses')
        if self.scheme == 'ssl' and self.server and 'cert' not in self.query:
            raise ValueError(f'{text!r}: a TLS listener needs cert=FILE '
                             '(and key=FILE unless the key is in it)')
        for option, choices in (('policy', ('require', 'optional')),
                                ('untrusted', ('reject', 'ignore'))):
            value = self._option(option)
            if value is not None and value.lower() not in choices:
                raise ValueError(f'{text!r}: {option}={value!r} is not one '
                                 f'of {", ".join(choices)}')
        mode = self._option('mode')
        if mode is not None:
            if not self.is_unix:
                raise ValueError(f'{text!r}: mode= only applies to UNIX '
                                 'sockets')
            try:
                int(mode, 8)
            except ValueError:
                raise ValueError(f'{text!r}: mode={mode!r} is not an octal '
                                 'file mode such as 660') from None
        try:
            self.ssl
        except (OSError, _ssl.SSLError) as exc:
            raise ValueError(f'{text!r}: cannot load the TLS files: '
                             f'{exc}') from None

    def describe(self) -> str:
        """A short human form: ``host:port``, ``[v6]:port`` or the path."""
        if self.is_unix:
            path = self.path or ''
            return 'unix:' + ('@' + path[1:] if path.startswith('\x00')
                              else path)
        host = self.host
        if ':' in host:
            host = f'[{host}]'
        prefix = {'ssl': 'ssl://', 'udp': 'udp://'}.get(self.scheme, '')
        return f'{prefix}{host}:{self.bind_port}'

    def __str__(self) -> str:
        return urlunsplit(self.url)

    def __repr__(self) -> str:
        return f'Address({self._text!r}, server={self.server!r})'
