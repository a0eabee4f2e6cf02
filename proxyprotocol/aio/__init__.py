"""asyncio adapters: read the PROXY header safely in asyncio servers.

* :mod:`proxyprotocol.aio.streams`: :func:`start_server` /
  :func:`start_unix_server` (handlers get ``(reader, writer, info)``) and
  :func:`read_proxy_header` for a stream you already have.
* :mod:`proxyprotocol.aio.protocol`: :func:`wrap_protocol_factory` for
  ``loop.create_server`` with any protocol; the application's transport is a
  :class:`ProxiedTransport`.
* :mod:`proxyprotocol.aio.tls`: TLS after the header, on memory buffers.
* :mod:`proxyprotocol.aio.datagram`: :func:`create_datagram_endpoint` for UDP,
  a header in front of every datagram.

The policy, timeout and size cap come from one
:class:`~proxyprotocol.policy.HeaderConfig`.

"""

from __future__ import annotations

from ..acceptor import (ConnectionInfo, ProxyProtocolEOFError,
                        ProxyProtocolRejectedError, ProxyProtocolTimeoutError)
from ..policy import DEFAULT_CONFIG, HeaderConfig, Policy
from .datagram import (DatagramStats, ProxiedDatagramProtocol,
                       ProxiedDatagramTransport, create_datagram_endpoint,
                       wrap_datagram_protocol_factory)
from .protocol import (DropCallback, HeaderProtocol, ProxiedTransport,
                       wrap_protocol_factory)
from .streams import (ConnectionHandler, read_proxy_header, start_server,
                      start_unix_server, stream_protocol_factory)
from .tls import TLSLayer

__all__ = ['HeaderConfig', 'Policy', 'DEFAULT_CONFIG', 'ConnectionInfo',
           'ProxyProtocolEOFError', 'ProxyProtocolRejectedError',
           'ProxyProtocolTimeoutError', 'read_proxy_header', 'start_server',
           'start_unix_server', 'stream_protocol_factory',
           'ConnectionHandler', 'HeaderProtocol', 'ProxiedTransport',
           'wrap_protocol_factory', 'DropCallback', 'TLSLayer',
           'create_datagram_endpoint', 'wrap_datagram_protocol_factory',
           'ProxiedDatagramProtocol', 'ProxiedDatagramTransport',
           'DatagramStats']
