"""The reference servers, ``proxyprotocol-server`` and ``proxyprotocol-echo``.

* :mod:`proxyprotocol.server.main`: the proxy server's command line.
* :mod:`proxyprotocol.server.echo`: the echo server's command line.
* :mod:`proxyprotocol.server.service` and :mod:`proxyprotocol.server.relay`:
  the proxy's engine (listeners, limits, timeouts; the relay of one
  connection).
* :class:`Address`: an endpoint as written on those command lines (0.11).
* :class:`Server` and :class:`Client`: the 0.4 asyncio protocols of a proxy
  (inbound and outbound side), kept for code that used them.

"""

from __future__ import annotations

from .address import Address
from .legacy import Client, Server

__all__ = ['Address', 'Server', 'Client']
