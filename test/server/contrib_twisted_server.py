"""The Twisted server the Twisted tests run as a subprocess.

A ``twisted.web`` site behind :class:`ProxyProtocolServerEndpoint`. Each
response is JSON: what ``transport.getPeer()`` / ``getHost()`` said in the
channel's ``connectionMade``, the address ``buildProtocol`` was given, the
request's client, and the header's TLVs. Prints ``{"port": N}`` once
listening and ``{"dropped": ...}`` for each refused connection.

"""
# Twisted's APIs are only partly annotated.
# mypy: allow-untyped-calls

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from twisted.internet import endpoints
from twisted.internet import reactor as _reactor
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from proxyprotocol.contrib.twisted import (ProxyProtocolServerEndpoint,
                                           proxy_info)
from proxyprotocol.policy import HeaderConfig

reactor: Any = _reactor


def address(addr: Any) -> Any:
    """A Twisted address as JSON."""
    if hasattr(addr, 'host'):
        return [addr.type, addr.host, addr.port]
    return ['UNIX', str(getattr(addr, 'name', None))]


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


class Channel(HTTPChannel):
    """Records the peer as the application sees it in connectionMade."""

    built_for: Any = None
    made: Optional[dict[str, Any]] = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.made = {'peer': address(transport.getPeer()),
                     'host': address(transport.getHost())}
        super().connectionMade()


class Describe(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        channel: Any = request.channel
        info = proxy_info(request.transport)
        assert info is not None
        body = {
            'connection_made': channel.made,
            'built_for': address(channel.built_for),
            'client': address(request.getClientAddress()),
            'secure': request.isSecure(),
            'socket_peername': list(info.socket_peername)
            if isinstance(info.socket_peername, tuple)
            else info.socket_peername,
            'unique_id': info.tlv.unique_id.decode(),
        }
        request.setHeader(b'content-type', b'application/json')
        return json.dumps(body).encode()


class DescribeSite(Site):
    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        channel.built_for = addr
        return channel


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--unix')
    parser.add_argument('--trusted', default='127.0.0.0/8,::1,unix')
    parser.add_argument('--untrusted-policy', default='reject')
    parser.add_argument('--timeout', type=float, default=5.0)
    parser.add_argument('--tls-pem', help='certificate and key, PEM')
    args = parser.parse_args(argv)

    config = HeaderConfig(trusted=args.trusted.split(','),
                          untrusted_policy=args.untrusted_policy,
                          timeout=args.timeout)
    tls = None
    if args.tls_pem:
        from twisted.internet.ssl import PrivateCertificate
        with open(args.tls_pem) as pem:
            tls = PrivateCertificate.loadPEM(pem.read()).options()
    if args.unix:
        inner: Any = endpoints.UNIXServerEndpoint(reactor, args.unix)
    elif ':' in args.host:
        inner = endpoints.TCP6ServerEndpoint(reactor, 0, interface=args.host)
    else:
        inner = endpoints.TCP4ServerEndpoint(reactor, 0, interface=args.host)

    def dropped(peer: Any, exc: BaseException) -> None:
        emit({'dropped': list(peer) if isinstance(peer, tuple) else peer,
              'error': type(exc).__name__})

    endpoint = ProxyProtocolServerEndpoint(inner, config, tls=tls,
                                           on_drop=dropped)
    site = DescribeSite(Describe())
    site.protocol = Channel  # type: ignore[assignment]
    listening = endpoint.listen(site)

    def started(port: Any) -> None:
        host = port.getHost()
        emit({'port': getattr(host, 'port', 0)})

    def failed(reason: Any) -> None:
        print(reason.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()

    listening.addCallbacks(started, failed)
    reactor.run()


if __name__ == '__main__':
    main()
