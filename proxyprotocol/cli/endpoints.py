"""Addresses as people type them on the command line.

* :func:`parse_endpoint` reads where to connect or listen: ``HOST:PORT``,
  ``[IPV6]:PORT``, ``unix:PATH`` (``unix:@NAME`` for Linux's abstract
  namespace) or a path starting with ``/`` or ``.``.
* :func:`parse_header_address` reads an address to put in a header:
  ``IP:PORT``, ``[IPV6]:PORT`` or, for the UNIX family, a path.

"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Callable, Optional, Union

__all__ = ['Endpoint', 'parse_endpoint', 'parse_header_address',
           'endpoint_type', 'HeaderAddress']

#: An address for a header: ``(ip, port)`` or a UNIX path.
HeaderAddress = Union[tuple[str, int], str]


@dataclass(frozen=True)
class Endpoint:
    """A TCP host and port, or a UNIX socket path."""

    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None

    @property
    def is_unix(self) -> bool:
        """Whether this is a UNIX socket path."""
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            if self.path.startswith('\x00'):
                return 'unix:@' + self.path[1:]
            return 'unix:' + self.path
        host = self.host or ''
        if ':' in host:
            host = f'[{host}]'
        return f'{host}:{self.port}'


def _port(text: str, original: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f'{original!r}: the port must be a number from 0 '
                         'to 65535')
    return int(text)


def _unix_path(text: str) -> str:
    if text.startswith('@'):
        return '\x00' + text[1:]
    return text


def parse_endpoint(text: str, *, default_host: Optional[str] = None
                   ) -> Endpoint:
    """Read ``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH`` or ``/PATH``.

    With ``default_host``, ``PORT`` and ``:PORT`` mean that host.

    Raises:
        ValueError: The text is none of these.

    """
    if text.startswith('unix:'):
        path = text[5:]
        if not path:
            raise ValueError(f'{text!r}: a UNIX socket path is missing')
        return Endpoint(path=_unix_path(path))
    if text.startswith(('/', './', '../')):
        return Endpoint(path=text)
    if text.startswith('['):
        host, sep, rest = text[1:].partition(']')
        if not sep or not rest.startswith(':'):
            raise ValueError(f'{text!r}: expected [IPV6]:PORT')
        return Endpoint(host=host, port=_port(rest[1:], text))
    if text.isdigit() and default_host is not None:
        return Endpoint(host=default_host, port=_port(text, text))
    host, sep, port = text.rpartition(':')
    if not sep:
        raise ValueError(f'{text!r}: expected HOST:PORT, [IPV6]:PORT or '
                         'unix:PATH')
    if ':' in host:
        raise ValueError(f'{text!r}: put an IPv6 address in brackets, '
                         'e.g. [::1]:8080')
    if not host:
        if default_host is None:
            raise ValueError(f'{text!r}: the host is missing')
        host = default_host
    return Endpoint(host=host, port=_port(port, text))


def parse_header_address(text: str, *, unix: bool = False) -> HeaderAddress:
    """Read an address for a header: ``IP:PORT``, ``[IPV6]:PORT`` or a path.

    With ``unix`` the text is always a path (``@NAME`` is abstract).

    Raises:
        ValueError: The text is not an IP address and port (nor, with
            ``unix``, a path).

    """
    if unix:
        return _unix_path(text[5:] if text.startswith('unix:') else text)
    if text.startswith('['):
        host, sep, rest = text[1:].partition(']')
        if not sep or not rest.startswith(':'):
            raise ValueError(f'{text!r}: expected [IPV6]:PORT')
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(':')
        if not sep or ':' in host:
            raise ValueError(f'{text!r}: expected IP:PORT or [IPV6]:PORT')
    try:
        ip = ip_address(host)
    except ValueError:
        raise ValueError(f'{text!r}: {host!r} is not an IP address') from None
    if text.startswith('[') and ip.version != 6:
        raise ValueError(f'{text!r}: only IPv6 addresses go in brackets')
    return (str(ip), _port(port_text, text))


def endpoint_type(default_host: Optional[str] = None
                  ) -> Callable[[str], Endpoint]:
    """An argparse ``type`` reading an :class:`Endpoint`."""
    def convert(text: str) -> Endpoint:
        try:
            return parse_endpoint(text, default_host=default_host)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert
