"""gunicorn workers running uvicorn behind the PROXY protocol.

::

    gunicorn app:app -k proxyprotocol.contrib.gunicorn.UvicornProxyWorker \\
        --proxy-allow-from 10.0.0.0/8 [--proxy-protocol v2] \\
        [--certfile cert.pem --keyfile key.pem]

The workers are uvicorn's (from the ``uvicorn-worker`` package, or
``uvicorn.workers`` when that is not installed) with the HTTP protocol
replaced by :mod:`proxyprotocol.contrib.uvicorn`'s, so the application sees
the same scope (``client``, ``server``, ``extensions['proxy_protocol']``).
They take their settings from gunicorn's own options:

* ``--proxy-allow-from``: the trusted proxies (gunicorn's default is
  127.0.0.1 and ::1; ``*`` trusts every peer); UNIX socket peers are always
  trusted, as gunicorn does. Any other peer is refused.
* ``--proxy-protocol v1|v2`` (gunicorn 24.1 and later): the one version
  accepted (by default both).
* ``--certfile`` / ``--keyfile`` (and the other TLS options): TLS starts
  right *after* the header, as a proxy such as HAProxy sends it.

The ``PROXYPROTOCOL_*`` environment variables
(:func:`~proxyprotocol.contrib.config_from_env`) override these, and set the
policies, the header timeout and the size cap.

"""

from __future__ import annotations

import ssl
import warnings
from typing import Any, ClassVar, Mapping, Optional

from ..policy import DEFAULT_CONFIG, UNIX, HeaderConfig
from ._common import config_from_env, trusted_from_strings
from .uvicorn import proxy_protocol_class

try:
    from uvicorn_worker import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        UvicornWorker as _UvicornWorker)
except ImportError:  # pragma: no cover - the older place
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        from uvicorn.workers import UvicornWorker as _UvicornWorker

__all__ = ['UvicornProxyWorker', 'UvicornH11ProxyWorker',
           'header_config_from_gunicorn']

_VERSIONS: Mapping[str, tuple[int, ...]] = {
    'v1': (1,), 'v2': (2,), 'auto': (1, 2), 'off': (1, 2)}


def header_config_from_gunicorn(cfg: Any,
                                base: HeaderConfig = DEFAULT_CONFIG
                                ) -> HeaderConfig:
    """The header settings that gunicorn's options give: trusted proxies
    from ``proxy_allow_ips`` (plus UNIX peers), versions from
    ``proxy_protocol``."""
    allowed = [str(a) for a in getattr(cfg, 'proxy_allow_ips', None) or ()]
    trusted = trusted_from_strings(allowed)
    if UNIX not in trusted:
        trusted = (*trusted, UNIX)
    mode = getattr(cfg, 'proxy_protocol', 'auto')
    if isinstance(mode, bool) or mode is None:
        mode = 'auto'
    versions = _VERSIONS.get(str(mode).lower(), (1, 2))
    return base.replace(trusted=trusted, versions=versions)


class UvicornProxyWorker(_UvicornWorker):  # type: ignore[misc]
    """uvicorn's gunicorn worker, reading the PROXY header first."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {'loop': 'auto',
                                               'http': 'auto'}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.config
        header_config = config_from_env(
            base=header_config_from_gunicorn(self.cfg))
        self.header_config = header_config
        context = self._tls_after_header()
        config.http = proxy_protocol_class(
            self.CONFIG_KWARGS['http'], config=header_config, ssl=context)

    def _tls_after_header(self) -> Optional[ssl.SSLContext]:
        # gunicorn's TLS options were handed to uvicorn, which would start
        # TLS before the header; build the context here and take them back.
        config = self.config
        if not config.is_ssl:
            return None
        from uvicorn.config import create_ssl_context
        context = create_ssl_context(
            certfile=config.ssl_certfile, keyfile=config.ssl_keyfile,
            password=config.ssl_keyfile_password,
            ssl_version=config.ssl_version, cert_reqs=config.ssl_cert_reqs,
            ca_certs=config.ssl_ca_certs, ciphers=config.ssl_ciphers)
        context.set_alpn_protocols(['http/1.1'])
        config.ssl_certfile = None
        config.ssl_keyfile = None
        return context


class UvicornH11ProxyWorker(UvicornProxyWorker):
    """The same, with the pure-Python h11 parser and the asyncio loop."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {'loop': 'asyncio',
                                               'http': 'h11'}
