"""PROXY protocol for the servers people already run.

One module per framework, each importing its framework only when it is
itself imported (the core package has no framework dependency):

* :mod:`proxyprotocol.contrib.uvicorn`: HTTP protocol classes for
  ``uvicorn --http`` and ``uvicorn.Config(http=...)``.
* :mod:`proxyprotocol.contrib.gunicorn`: gunicorn workers running uvicorn.
* :mod:`proxyprotocol.contrib.aiohttp`: sites for ``aiohttp.web`` runners.
* :mod:`proxyprotocol.contrib.twisted`: a wrapping factory and an endpoint.
* :mod:`proxyprotocol.contrib.anyio`: anyio (and so trio) byte streams and
  listeners.

They all read the header with the same
:class:`~proxyprotocol.policy.HeaderConfig` (trusted proxies, policies,
timeout, size cap) and give the same
:class:`~proxyprotocol.acceptor.ConnectionInfo` as the asyncio adapters.

Where a server is started from its command line and cannot be handed a
config object, the settings come from environment variables
(:func:`config_from_env`, :func:`ssl_context_from_env`).

"""

from __future__ import annotations

from ._common import (ENV_PREFIX, ProxiedSocket, config_from_env,
                      ssl_context_from_env)

__all__ = ['ENV_PREFIX', 'ProxiedSocket', 'config_from_env',
           'ssl_context_from_env']
