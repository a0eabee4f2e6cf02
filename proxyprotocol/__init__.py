"""HAProxy's PROXY protocol, versions 1 and 2: a strict sans-I/O codec,
asyncio adapters and reference servers.

The codec in brief::

    from proxyprotocol import parse_header, build_header, NeedMore

    parsed = parse_header(data)
    if isinstance(parsed, NeedMore):
        ...  # read more and call again
    else:
        client = parsed.result.source     # the original client
        app_data = data[parsed.length:]   # what followed the header

The names of releases 0.4 and 0.11 (``ProxyProtocol``, ``ProxyProtocolError``,
``ProxyProtocolResult``, ``ProxyProtocolSyntaxError``, ...) are here too.

"""

from __future__ import annotations

from .__about__ import __version__
from .base import ProxyProtocol
from .errors import (NeedMore, ProxyProtocolBuildError,
                     ProxyProtocolChecksumError, ProxyProtocolError,
                     ProxyProtocolIncompleteError, ProxyProtocolSyntaxError,
                     ProxyProtocolTooLongError, ProxyProtocolWantRead)
from .header import (DEFAULT_MAX_LENGTH, HeaderParser, ParsedHeader,
                     build_datagram, build_header, parse_datagram,
                     parse_header)
from .result import ProxyResult
from .result import ProxyResult as ProxyProtocolResult
from .sockaddr import result_from_sockaddrs

__all__ = [
    '__version__',
    # the sans-I/O codec
    'parse_header', 'parse_datagram', 'build_header', 'build_datagram',
    'result_from_sockaddrs', 'HeaderParser', 'ParsedHeader', 'NeedMore',
    'DEFAULT_MAX_LENGTH',
    # errors
    'ProxyProtocolError', 'ProxyProtocolSyntaxError',
    'ProxyProtocolTooLongError', 'ProxyProtocolChecksumError',
    'ProxyProtocolIncompleteError', 'ProxyProtocolBuildError',
    'ProxyProtocolWantRead',
    # the implementations' interface and results (0.4 and 0.11 names)
    'ProxyProtocol', 'ProxyResult', 'ProxyProtocolResult',
]
