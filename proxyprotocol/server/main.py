"""``proxyprotocol-server``: a TCP proxy that tells the destination who the
client is, with a PROXY protocol header.

Each ``--service LISTEN DEST`` pair listens on LISTEN and, for every
connection, connects to DEST, sends a v1 or v2 header describing the
original connection, and relays bytes both ways until both sides are done::

    proxyprotocol-server --service localhost:10000 localhost:10007
    proxyprotocol-server v1 --service 0.0.0.0:8080 10.0.0.5:80
    proxyprotocol-server --service ':443?pp=v2' 'unix:/run/app.sock?pp=v2'
    proxyprotocol-server --workers 4 \\
        --service 'ssl://:8443?cert=site.pem&alpn=h2,http/1.1' '10.0.0.5:8080'

Run ``proxyprotocol-server --help`` for every option, and see
``docs/servers.md`` for operating it.

"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any, Optional, Sequence, Union

from ..base import ProxyProtocol
from ..dnsbl import Dnsbl
from ..noop import ProxyProtocolNoop
from ..policy import DEFAULT_TIMEOUT, DEFAULT_TRUSTED, HeaderConfig
from ..v1 import ProxyProtocolV1
from ..v2 import ProxyProtocolV2
from .address import TLV_NAMES, Address
from .cli import (EXIT_FAILURE, EXIT_OK, ShutdownSignals,
                  add_common_arguments, loop_name, positive_int,
                  raise_fd_limit, run_loop, seconds, setup_logging)
from .relay import (DEFAULT_BUF_LEN, disable_splice, set_buffer_size,
                    splice_available)
from .service import (ProxyServer, ServiceOptions, bind_tcp, bind_unix,
                      resolve)
from .udp import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FLOWS, UDPProxy, serve_udp
from .workers import supervise

__all__ = ['main', 'run', 'address', 'make_parser', 'ServerConfig']

_log = logging.getLogger('proxyprotocol.server')

_LEGACY_VERSIONS = ('noop', 'detect', 'v1', 'v2')

#: Seconds a TCP connection may stay silent both ways (as nginx's stream
#: ``proxy_timeout``): long enough for interactive sessions, short enough
#: that dead peers do not pile up.
_DEFAULT_IDLE = 600.0

#: The legacy positional version, as the header version it selects. 0.4's
#: ``detect`` tried v1 first, so it sent v1 lines.
_LEGACY_DEFAULT = {None: 2, 'v2': 2, 'v1': 1, 'detect': 1, 'noop': None}

_EPILOG = """\
addresses:
  HOST:PORT, [IPV6]:PORT, :PORT (every interface), unix:PATH (or /PATH,
  ./PATH), unix:@NAME (abstract); ssl://HOST:PORT for TLS; udp://HOST:PORT
  for a UDP service (datagrams forwarded behind a v2 header). Options go in
  a query string: 'HOST:PORT?pp=v2&tlv=crc32c' (quote it in a shell).

LISTEN options:
  pp=v1|v2|detect    read a PROXY header from a trusted proxy in front and
                     pass its addresses on (default: none expected)
  trusted=NET,...    who may send that header (default: --trusted)
  policy=require|optional    a trusted peer must send a header (default),
                     or may
  untrusted=reject|ignore    untrusted peers are refused (default), or served
                     as themselves
  cert=FILE key=FILE (ssl://) terminate TLS: certificate chain and key
  verify=CERT_NONE|CERT_OPTIONAL|CERT_REQUIRED  ask clients for a certificate
  cafile=FILE capath=DIR     CAs for client certificates
  alpn=P1,P2         ALPN protocols offered to clients
  mode=660           permissions of a UNIX socket file

DEST options:
  pp=v1|v2|detect|noop   header to send (default v2; the positional VERSION
                     sets another default; detect sends v2; noop sends none)
  tlv=NAME,...|none  v2 TLVs: crc32c, unique-id (16 random bytes), and when
                     the listener terminates TLS: ssl, alpn, authority (SNI).
                     Default: all of them that apply (udp:// destinations:
                     crc32c only)
  cafile=FILE capath=DIR verify=MODE cert=FILE key=FILE sni=NAME alpn=P1,P2
                     (ssl://) TLS towards the destination, checked against
                     the system CAs unless told otherwise

signals:
  SIGTERM, SIGINT    stop accepting, let open connections finish within
                     --drain-timeout, then reset the rest; a second signal
                     resets them at once

exit status:
  0 stopped by a signal; 1 could not start (address in use, unknown host,
  TLS files); 2 bad command line
"""


class ServerConfig:
    """The checked command line of ``proxyprotocol-server``."""

    def __init__(self, args: argparse.Namespace,
                 services: list[tuple[Address, Address]]) -> None:
        self.args = args
        self.services = services
        self.options = ServiceOptions(
            default_version=_LEGACY_DEFAULT[args.type],
            trusted=args.trusted or DEFAULT_TRUSTED,
            header_timeout=args.header_timeout,
            connect_timeout=args.connect_timeout,
            backlog=args.backlog, reuse_port=args.workers > 1,
            dnsbl=Dnsbl.load(args.dnsbl, timeout=args.dnsbl_timeout)
            if args.dnsbl else None)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``proxyprotocol-server``."""
    parser = argparse.ArgumentParser(
        prog='proxyprotocol-server',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='A TCP proxy that sends a PROXY protocol header (v1 or '
        'v2)\ndescribing each original connection to its destination.',
        epilog=_EPILOG)
    parser.add_argument(
        'type', nargs='?', metavar='VERSION', type=str.lower,
        choices=_LEGACY_VERSIONS,
        help='the header for destinations without ?pp= (2020 syntax): '
        'v1, v2, detect (= v1, as 0.4 did) or noop (none). Default: v2')
    parser.add_argument(
        '--service', nargs=2, metavar=('LISTEN', 'DEST'), action='append',
        default=[], dest='services', help='listen on LISTEN, connect each client to DEST '
        '(repeat for more services)')
    parser.add_argument(
        '--workers', type=positive_int, default=1, metavar='N',
        help='worker processes sharing the listening ports with SO_REUSEPORT '
        '(default 1: no extra process)')
    parser.add_argument(
        '--max-connections', type=positive_int, metavar='N',
        help='connections at once per worker; at the limit new clients wait '
        'in the listen backlog (default: what the open-file limit allows)')
    parser.add_argument(
        '--connect-timeout', type=seconds, default=10.0, metavar='SECONDS',
        help='to connect to DEST, TLS included (default 10)')
    parser.add_argument(
        '--idle-timeout', type=seconds, metavar='SECONDS',
        help='close a TCP or UNIX connection with no byte either way for '
        'this long (default 600; 0: never)')
    parser.add_argument(
        '--udp-idle-timeout', type=seconds, default=DEFAULT_IDLE_TIMEOUT,
        metavar='SECONDS',
        help='UDP services: close a client\'s flow (and its upstream '
        f'socket) after this long without a datagram either way (default '
        f'{DEFAULT_IDLE_TIMEOUT:g}; must be more than 0)')
    parser.add_argument(
        '--udp-max-flows', type=positive_int, default=DEFAULT_MAX_FLOWS,
        metavar='N',
        help='UDP services: the most clients (flows, one socket each) at '
        'once per service; datagrams from new clients beyond are dropped '
        f'(default {DEFAULT_MAX_FLOWS})')
    parser.add_argument(
        '--header-timeout', type=seconds, default=DEFAULT_TIMEOUT,
        metavar='SECONDS', help='for the header of a proxy in front '
        f'(LISTEN?pp=) and for the TLS handshake of ssl:// listeners '
        f'(default {DEFAULT_TIMEOUT:g})')
    parser.add_argument(
        '--drain-timeout', type=seconds, default=30.0, metavar='SECONDS',
        help='on SIGTERM/SIGINT, how long open connections may go on '
        '(default 30)')
    parser.add_argument(
        '--trusted', action='append', metavar='NET',
        help='a proxy allowed to send a header to LISTEN?pp= services: a '
        'network, an address or "unix" (repeat; default: 127.0.0.0/8, '
        '::1/128 and unix)')
    parser.add_argument(
        '--buf-len', type=int, default=DEFAULT_BUF_LEN, metavar='BYTES',
        help='bytes read at once, and the most held per direction while the '
        'other side is slow (default 65536). Unlike 0.4/0.11, nothing is '
        'allocated per connection')
    parser.add_argument(
        '--no-splice', action='store_true',
        help='never move bulk data with splice(2) (Linux; on by default)')
    parser.add_argument(
        '--dnsbl', metavar='HOST',
        help='look each IPv4 client up in this DNS blocklist zone and send '
        "the verdict in the header (0.11's extension TLV; v2 only)")
    parser.add_argument(
        '--dnsbl-timeout', type=seconds, metavar='SECONDS',
        help='for each DNSBL lookup (default 2; a lookup that fails or '
        'times out counts as "not listed")')
    parser.add_argument(
        '--backlog', type=positive_int, default=4096, metavar='N',
        help='listen queue length (default 4096, capped by the kernel)')
    add_common_arguments(parser)
    return parser


def _check(parser: argparse.ArgumentParser,
           args: argparse.Namespace) -> ServerConfig:
    if not args.services:
        parser.error('At least one --service is required.')
    if args.buf_len < 1024:
        parser.error('--buf-len must be at least 1024')
    if args.dnsbl_timeout is not None and args.dnsbl_timeout <= 0:
        parser.error('--dnsbl-timeout must be more than 0')
    if not 0 < args.udp_idle_timeout < 1e9:
        parser.error('--udp-idle-timeout must be more than 0 (and less '
                     'than 1e9)')
    services = []
    for listen_text, dest_text in args.services:
        listen = Address(listen_text, server=True)
        dest = Address(dest_text)
        try:
            listen.check()
            dest.check()
        except ValueError as exc:
            parser.error(f'--service {listen_text} {dest_text}: {exc}')
        if listen.is_udp != dest.is_udp:
            parser.error(f'--service {listen_text} {dest_text}: a UDP service '
                         'needs udp:// on both sides')
        services.append((listen, dest))
    if args.trusted:
        try:
            HeaderConfig(trusted=args.trusted)
        except (ValueError, TypeError) as exc:
            parser.error(f'--trusted: {exc}')
    return ServerConfig(args, services)


def _describe_header(service: Any) -> str:
    headers = service.headers
    if headers.version is None:
        return 'no header'
    tls_only = ('ssl', 'alpn', 'authority')
    tlvs = [name for name in TLV_NAMES
            if getattr(headers, name.replace('-', '_'))
            and (service.server_context is not None or name not in tls_only)]
    return f'PROXY v{headers.version}' + \
        (f' + {",".join(tlvs)}' if tlvs and headers.version == 2 else '')


async def _serve(config: ServerConfig,
                 planned: Optional[list[Optional[list[Any]]]] = None,
                 index: int = 0) -> int:
    """Serve until a signal; ``planned`` gives, per service, the sockets or
    addresses reserved by the supervisor of worker processes."""
    args = config.args
    loop = asyncio.get_running_loop()
    server = ProxyServer(max_connections=args.max_connections,
                         idle_timeout=_DEFAULT_IDLE if args.idle_timeout is None
                         else args.idle_timeout,
                         drain_timeout=args.drain_timeout, loop=loop)
    udp: list[tuple[Address, Address, UDPProxy]] = []
    try:
        for number, (listen, dest) in enumerate(config.services):
            if listen.is_udp:
                if index == 0:
                    udp.append((listen, dest, await _serve_udp(
                        server, listen, dest, config)))
                continue
            service = server.add(listen, dest, config.options)
            plan = planned[number] if planned is not None else None
            if plan is None:
                service.bind()
            else:
                for item in plan:
                    if isinstance(item, socket.socket):
                        service.add_socket(item)
                    else:
                        family, sockaddr = item
                        service.add_socket(bind_tcp(
                            family, sockaddr, backlog=args.backlog,
                            reuse_port=True))
            if planned is None:
                for text in service.addresses:
                    _log.info('listening on %s -> %s (%s)', text,
                              dest.describe(), _describe_header(service))
    except (OSError, ValueError) as exc:
        _log.error('cannot start: %s', exc)
        await server.shutdown(0)
        return EXIT_FAILURE
    signals = ShutdownSignals(loop, _log)
    server.start()
    if planned is None:
        _log.info('ready (pid %d, %s, splice %s, at most %d connections)',
                  os.getpid(), loop_name(loop),
                  'on' if splice_available() else 'off',
                  args.max_connections)
    else:
        _log.info('worker %d ready (pid %d, %s)', index, os.getpid(),
                  loop_name(loop))
    await signals.stopping.wait()
    drain = loop.create_task(server.shutdown())
    forced = loop.create_task(signals.forced.wait())
    await asyncio.wait((drain, forced), return_when=asyncio.FIRST_COMPLETED)
    if not drain.done():
        server.abort_all()
        await drain
    forced.cancel()
    signals.remove()
    stats = server.stats
    _log.info('stopped after %d connection(s) (%d could not connect, %d '
              'refused, %d timed out)', stats['accepted'],
              stats['connect_failed'], stats['refused'], stats['timed_out'])
    _log_udp_stats(udp)
    return EXIT_OK


#: Of the TLVs a destination may ask for, those a UDP service sends: its
#: headers carry the same TLVs for every flow, so UNIQUE_ID (one per
#: connection, spec 2.2.5) cannot be among them, and SSL, ALPN and
#: AUTHORITY need a TLS handshake, which UDP listeners do not do.
_UDP_TLVS = frozenset(('crc32c',))


async def _serve_udp(server: ProxyServer, listen: Address, dest: Address,
                     config: ServerConfig) -> UDPProxy:
    name = dest.pp_name
    version = None if name == 'noop' else 2
    listen_text = f'[{listen.host}]' if ':' in listen.host else listen.host
    dest_text = f'[{dest.host}]' if ':' in dest.host else dest.host
    args = config.args
    if version is not None and 'tlv' in dest.query:
        left_out = sorted(dest.tlvs - _UDP_TLVS)
        if left_out:
            _log.warning('%s: TLV(s) %s do not apply to UDP and are not '
                         'sent (UDP headers carry crc32c only)',
                         dest.describe(), ', '.join(left_out))
    crc32c = version is not None and 'crc32c' in dest.tlvs
    proxy = await serve_udp(f'{listen_text}:{listen.bind_port}',
                            f'{dest_text}:{dest.bind_port}', version=version,
                            idle_timeout=args.udp_idle_timeout,
                            max_flows=args.udp_max_flows, crc32c=crc32c)
    server.extra.append(proxy)
    _log.info('UDP flows to %s: closed after %g s idle, at most %d at once%s',
              dest.describe(), proxy.idle_timeout, proxy.max_flows,
              ', CRC32C in each header' if crc32c else '')
    return proxy


def _log_udp_stats(udp: list[tuple[Address, Address, UDPProxy]]) -> None:
    """One line per UDP service with its counters, at shutdown."""
    for listen, dest, proxy in udp:
        stats = proxy.stats
        counts = ' '.join(f'{key}={value}'
                          for key, value in stats.as_dict().items())
        where = ', '.join(
            f'[{a[0]}]:{a[1]}' if ':' in a[0] else f'{a[0]}:{a[1]}'
            for a in proxy.addresses) or listen.describe()
        _log.info('UDP service on %s -> %s stopped: %s', where,
                  dest.describe(), counts)


def _reserve(config: ServerConfig) -> list[Optional[list[Any]]]:
    """For worker processes: bind every listening address once, now, so
    that errors show before forking and port 0 becomes one fixed port. TCP
    sockets are only bound (each worker listens on its own SO_REUSEPORT
    socket); UNIX sockets listen here and are shared."""
    args = config.args
    plans: list[Optional[list[Any]]] = []
    keep: list[socket.socket] = []
    for listen, dest in config.services:
        if listen.is_udp:
            plans.append(None)
            continue
        plan: list[Any] = []
        if listen.is_unix:
            path = listen.path
            assert path is not None
            mode = listen.query.get('mode', [None])[-1]
            plan.append(bind_unix(path, backlog=args.backlog,
                                  mode=int(mode, 8) if mode else None))
        else:
            port = listen.bind_port
            for family, sockaddr in resolve(listen, passive=True):
                if port == 0 and keep:
                    port = keep[0].getsockname()[1]
                if port != sockaddr[1]:
                    sockaddr = (sockaddr[0], port) + tuple(sockaddr[2:])
                sock = bind_tcp(family, sockaddr, backlog=args.backlog,
                                reuse_port=True, listen=False)
                keep.append(sock)
                bound = sock.getsockname()
                plan.append((family, bound))
                shown = f'[{bound[0]}]' if ':' in bound[0] else bound[0]
                _log.info('listening on %s:%d -> %s', shown, bound[1],
                          dest.describe())
        for item in plan:
            if isinstance(item, socket.socket):
                _log.info('listening on unix:%s -> %s',
                          item.getsockname(), dest.describe())
        plans.append(plan)
    config.reservations = keep   # type: ignore[attr-defined]
    return plans


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``proxyprotocol-server`` with ``argv`` (default: the process's
    arguments); returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    config = _check(parser, args)
    setup_logging(args.quiet, args.verbose)
    limit = raise_fd_limit()
    if args.max_connections is None:
        # Two descriptors per connection, some spare for listeners & pipes.
        args.max_connections = max(1, (limit - 64) // 2)
    set_buffer_size(args.buf_len)
    if args.no_splice:
        disable_splice()
    try:
        if args.workers == 1:
            return run_loop(_serve(config), args.loop)
        try:
            plans = _reserve(config)
        except OSError as exc:
            _log.error('cannot start: %s', exc)
            return EXIT_FAILURE
        try:
            return supervise(args.workers, lambda index: run_loop(
                _serve(config, plans, index), args.loop))
        finally:
            for plan in plans:
                for item in plan or ():
                    if isinstance(item, socket.socket):
                        path = item.getsockname()
                        item.close()
                        if isinstance(path, str) and path and \
                                not path.startswith('\x00'):
                            try:
                                os.unlink(path)
                            except OSError:
                                pass
    except RuntimeError as exc:
        _log.error('%s', exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:   # pragma: no cover - before the handlers
        return EXIT_OK


# -- the 0.4 and 0.11 module helpers -----------------------------------------

def address(addr: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[IPV6]:PORT``) as 0.4 did.

    Raises:
        ValueError: The port is not a number.

    """
    host, _, port = addr.rpartition(':')
    if host.startswith('[') and host.endswith(']'):
        host = host[1:-1]
    return host, int(port)


def _address_text(value: Any) -> str:
    # 0.4's parser gave (host, port) tuples; 0.11's gave the text.
    if isinstance(value, tuple):
        host, port = value
        return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'
    return str(value)


async def run(pp_or_args: Union[ProxyProtocol, argparse.Namespace],
              args: Optional[argparse.Namespace] = None) -> int:
    """Serve parsed arguments until SIGINT/SIGTERM: ``run(args)`` as in
    0.11, or ``run(pp, args)`` as in 0.4 (``pp`` then sets the header of
    destinations without ``?pp=``). Returns the exit status."""
    if args is None:
        assert isinstance(pp_or_args, argparse.Namespace)
        args = pp_or_args
    else:
        pp = pp_or_args
        args.type = 'noop' if isinstance(pp, ProxyProtocolNoop) else \
            'v1' if isinstance(pp, ProxyProtocolV1) else \
            'v2' if isinstance(pp, ProxyProtocolV2) else 'detect'
    defaults = make_parser().parse_args(
        ['--service', 'localhost:1', 'localhost:1'])
    for name, value in vars(defaults).items():
        if not hasattr(args, name):
            setattr(args, name, value)
    if args.max_connections is None:
        args.max_connections = max(1, (raise_fd_limit() - 64) // 2)
    services = [(Address(_address_text(listen), server=True),
                 Address(_address_text(dest)))
                for listen, dest in args.services]
    args.workers = 1
    config = ServerConfig(args, services)
    return await _serve(config)


if __name__ == '__main__':
    sys.exit(main())
