"""``proxyprotocol-echo``: an echo server that shows who really connected.

It reads the PROXY protocol header of each connection (under the policy,
timeout and size cap of :mod:`proxyprotocol.policy`, through the asyncio
adapters), logs the original connection once: addresses, protocol and TLVs,
and echoes every byte back exactly as it arrives until the client closes.
Connections with a bad or missing header are closed (and logged)::

    proxyprotocol-echo                       # localhost:10007, v1 or v2
    proxyprotocol-echo v2 --host 127.0.0.1 --port 10007      # 2020 syntax
    proxyprotocol-echo '127.0.0.1:10007?pp=v1' unix:/tmp/echo.sock
    proxyprotocol-echo 'ssl://127.0.0.1:10443?cert=echo.pem'  # TLS after
    proxyprotocol-echo udp://127.0.0.1:10007                  # datagrams

Without an address it listens on ``localhost:10007`` (loopback only), as
0.4 did; 0.11 listened on every interface, which exposed a test server to
the network by default.

"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any, Optional, Sequence, Union

from ..acceptor import ConnectionInfo
from ..aio.streams import start_server, start_unix_server
from ..base import ProxyProtocol
from ..noop import ProxyProtocolNoop
from ..policy import DEFAULT_TIMEOUT, DEFAULT_TRUSTED, HeaderConfig, Policy
from ..result import ProxyResult
from ..tlv import ProxyProtocolTLV, Type
from ..v1 import ProxyProtocolV1
from ..v2 import ProxyProtocolV2
from .address import Address
from .cli import (EXIT_FAILURE, EXIT_OK, ShutdownSignals, add_common_arguments,
                  loop_name, run_loop, seconds, setup_logging)
from .relay import format_address
from .service import bind_unix

__all__ = ['main', 'run', 'run_conn', 'make_parser', 'EchoServer',
           'header_config', 'describe_connection', 'describe_tlvs',
           'DEFAULT_ADDRESS']

_log = logging.getLogger('proxyprotocol.echo')

#: Where the echo server listens when told nothing (loopback only).
DEFAULT_ADDRESS = 'localhost:10007'

_VERSION_WORDS = ('noop', 'detect', 'v1', 'v2')
_VERSIONS = {'v1': (1,), 'v2': (2,), 'detect': (1, 2)}

_EPILOG = f"""\
addresses:
  HOST:PORT, [IPV6]:PORT, :PORT (every interface), unix:PATH (or /PATH,
  ./PATH), unix:@NAME (abstract), udp://HOST:PORT (datagrams, each behind a
  v2 header); ssl://HOST:PORT?cert=FILE[&key=FILE] for TLS after the header.
  Default: {DEFAULT_ADDRESS} (loopback only). Options in a query string:
  pp=noop|detect|v1|v2 (the header expected; default: the VERSION argument,
  else detect), trusted=NET,... (who may send it; default --trusted).

who may send a header:
  Only trusted peers (--trusted; default loopback and UNIX sockets) may send
  one; --untrusted decides what happens to the others. With noop, no header
  is read and every peer is served as itself.

signals:
  SIGTERM, SIGINT    close the listeners and every connection, exit 0

exit status:
  0 stopped by a signal; 1 could not start; 2 bad command line
"""


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``proxyprotocol-echo``."""
    parser = argparse.ArgumentParser(
        prog='proxyprotocol-echo',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='An echo server behind a PROXY protocol header: it logs '
        'the original\nclient of each connection and echoes every byte.',
        epilog=_EPILOG)
    parser.add_argument(
        'where', nargs='*', metavar='ADDRESS|VERSION',
        help='addresses to listen on, and/or the header version expected: '
        'noop (none), detect (v1 or v2, the default), v1 or v2 (2020 syntax)')
    parser.add_argument('--host', help='listen on this host (2020 syntax; '
                        'default localhost)')
    parser.add_argument('--port', type=int, help='listen on this port (2020 '
                        'syntax; default 10007)')
    parser.add_argument(
        '--trusted', action='append', metavar='NET',
        help='a proxy allowed to send a header: a network, an address or '
        '"unix" (repeat; default: 127.0.0.0/8, ::1/128 and unix)')
    parser.add_argument(
        '--untrusted', choices=('reject', 'ignore'), default='reject',
        help='what to do with connections from other peers: close them '
        '(default), or serve them as themselves without reading a header')
    parser.add_argument(
        '--optional', action='store_true',
        help='serve trusted peers that send no header as themselves')
    parser.add_argument(
        '--header-timeout', type=seconds, default=DEFAULT_TIMEOUT,
        metavar='SECONDS', help='for the whole header to arrive (default '
        f'{DEFAULT_TIMEOUT:g}); also the TLS handshake of ssl:// addresses')
    add_common_arguments(parser)
    return parser


def describe_tlvs(tlv: ProxyProtocolTLV) -> str:
    """The TLVs on one line: ``alpn=h2 authority=example.com ...``."""
    parts = []
    for tlv_type, value in tlv.entries:
        if tlv_type == Type.PP2_TYPE_ALPN:
            parts.append('alpn=' + value.decode('ascii', 'replace'))
        elif tlv_type == Type.PP2_TYPE_AUTHORITY:
            parts.append('authority=' + value.decode('utf-8', 'replace'))
        elif tlv_type == Type.PP2_TYPE_CRC32C:
            parts.append(f'crc32c=0x{value.hex()}')
        elif tlv_type == Type.PP2_TYPE_UNIQUE_ID:
            parts.append('unique_id=' + value.hex())
        elif tlv_type == Type.PP2_TYPE_NETNS:
            parts.append('netns=' + value.decode('ascii', 'replace'))
        elif tlv_type == Type.PP2_TYPE_SSL:
            ssl = tlv.ssl
            fields = [f'{name}={getattr(ssl, name)}' for name in (
                'version', 'cipher', 'cn', 'sig_alg', 'key_alg', 'group',
                'sig_scheme') if getattr(ssl, name) is not None]
            fields.append('client_cert' if ssl.has_cert_conn
                          else 'no_client_cert')
            fields.append('verified' if ssl.verified else
                          f'verify={ssl.verify}')
            parts.append(f'ssl({", ".join(fields)})')
        elif tlv_type == Type.PP2_TYPE_AWS and tlv.aws_vpce_id:
            parts.append('aws_vpce_id=' + tlv.aws_vpce_id)
        elif tlv_type == Type.PP2_TYPE_AZURE and \
                tlv.azure_link_id is not None:
            parts.append(f'azure_link_id={tlv.azure_link_id}')
        elif tlv_type == Type.PP2_TYPE_GCP and \
                tlv.gcp_psc_connection_id is not None:
            parts.append(f'gcp_psc_connection_id='
                         f'{tlv.gcp_psc_connection_id}')
        else:
            parts.append(f'0x{tlv_type:02x}={value.hex()}')
    return ' '.join(parts)


_KINDS: dict[tuple[str, Optional[socket.SocketKind]], str] = {
    ('IPv4', socket.SOCK_STREAM): 'TCP4',
    ('IPv6', socket.SOCK_STREAM): 'TCP6',
    ('IPv4', socket.SOCK_DGRAM): 'UDP4',
    ('IPv6', socket.SOCK_DGRAM): 'UDP6',
    ('UNIX', socket.SOCK_STREAM): 'UNIX stream',
    ('UNIX', socket.SOCK_DGRAM): 'UNIX dgram'}


def _kind(result: ProxyResult) -> str:
    """``TCP4``, ``TCP6``, ``UDP4``, ``UNIX stream``, ``LOCAL``..."""
    name = result.type.name
    return _KINDS.get((name, result.protocol), name)


def describe_connection(info: ConnectionInfo) -> str:
    """One line about a connection: the original client and address, how
    we know (the header, or the socket), and the TLVs."""
    real = format_address(info.socket_peername)
    if info.header is None:
        return (f'connection from {real} to '
                f'{format_address(info.socket_sockname)} (no header)')
    result = info.header.result
    version = f'PROXY v{info.header.version} {_kind(result)}'
    text = (f'connection from {format_address(info.peername)} to '
            f'{format_address(info.sockname)} ({version} via {real})')
    if not info.proxied:
        text += ': the proxy itself' if not result.proxied \
            else ': addresses unknown'
    tlvs = describe_tlvs(info.tlv)
    if tlvs:
        text += ' TLVs: ' + tlvs
    return text


class EchoServer:
    """The echo service: listeners (:meth:`listen`) and the connections
    they serve, until :meth:`close`."""

    def __init__(self) -> None:
        self.count = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.servers: list[Any] = []
        self.unix_paths: list[str] = []

    def on_drop(self, peer: Any, exc: BaseException) -> None:
        _log.warning('dropped a connection from %s: %s',
                     format_address(peer), exc)

    async def handle(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter,
                     info: ConnectionInfo) -> None:
        self.count += 1
        unique_id = info.tlv.unique_id
        conn_id = unique_id.hex()[:16] if unique_id else f'{self.count}'
        _log.info('[%s] %s', conn_id, describe_connection(info))
        self.writers.add(writer)
        echoed = 0
        try:
            echoed = await _echo(reader, writer)
        except (ConnectionError, OSError) as exc:
            _log.info('[%s] %s', conn_id, exc)
        finally:
            self.writers.discard(writer)
            writer.close()
        _log.debug('[%s] closed after echoing %d bytes', conn_id, echoed)

    async def listen(self, address: Address, config: HeaderConfig) -> None:
        if address.is_udp:
            from .udp import serve_udp_echo
            host = f'[{address.host}]' if ':' in address.host \
                else address.host
            udp = await serve_udp_echo(f'{host}:{address.bind_port}',
                                       config=config, on_drop=self.on_drop)
            self.servers.append(udp)
            return
        kwds: dict[str, Any] = dict(
            config=config, ssl=address.ssl, on_drop=self.on_drop,
            ssl_handshake_timeout=config.timeout)
        if address.is_unix:
            path = address.path
            assert path is not None
            mode = address.query.get('mode', [None])[-1]
            sock = bind_unix(path, backlog=1024,
                             mode=int(mode, 8) if mode else None)
            if not path.startswith('\x00'):
                self.unix_paths.append(path)
            server = await start_unix_server(self.handle, sock=sock, **kwds)
        else:
            server = await start_server(self.handle, address.host or None,
                                        address.bind_port, **kwds)
        self.servers.append(server)
        for sock in server.sockets:
            _log.info('listening on %s (%s)',
                      format_address(sock.getsockname()),
                      _config_text(config))

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for writer in list(self.writers):
            writer.close()
        for path in self.unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        # Let the handlers see their connections end.
        await asyncio.sleep(0)


def _config_text(config: HeaderConfig) -> str:
    if config.trusted_policy is Policy.IGNORE:
        return 'no header'
    versions = '/'.join(f'v{v}' for v in config.versions)
    return (f'{versions} header {config.trusted_policy.value} from '
            f'{", ".join(str(t) for t in config.trusted)}; others: '
            f'{config.untrusted_policy.value}')


async def _echo(reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> int:
    """Echo until the client ends its side; returns the bytes echoed."""
    total = 0
    while True:
        data = await reader.read(65536)
        if not data:
            break
        total += len(data)
        writer.write(data)
        await writer.drain()
    return total


def header_config(args: argparse.Namespace, version: Optional[str],
                  address: Address) -> HeaderConfig:
    """The header policy for one address, from the command line."""
    name = address.pp_name or version or 'detect'
    trusted: Sequence[Any] = args.trusted or DEFAULT_TRUSTED
    if 'trusted' in address.query:
        trusted = [t.strip() for v in address.query['trusted']
                   for t in v.split(',') if t.strip()]
    if name == 'noop':
        return HeaderConfig(trusted=trusted, trusted_policy=Policy.IGNORE,
                            untrusted_policy=Policy.IGNORE,
                            timeout=args.header_timeout)
    return HeaderConfig(
        trusted=trusted,
        trusted_policy=Policy.OPTIONAL if args.optional else Policy.REQUIRE,
        untrusted_policy=args.untrusted, versions=_VERSIONS[name],
        timeout=args.header_timeout)


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace
           ) -> tuple[Optional[str], list[Address]]:
    version = None
    texts = []
    for item in args.where:
        if item.lower() in _VERSION_WORDS:
            if version is not None:
                parser.error(f'two header versions given: {version} and '
                             f'{item}')
            version = item.lower()
        else:
            texts.append(item)
    if args.host is not None or args.port is not None:
        host = args.host if args.host is not None else 'localhost'
        if ':' in host and not host.startswith('['):
            host = f'[{host}]'
        port = args.port if args.port is not None else 10007
        if not 0 <= port <= 65535:
            parser.error(f'--port {port} is not in 0-65535')
        texts.append(f'{host}:{port}')
    if not texts:
        texts.append(DEFAULT_ADDRESS)
    addresses = []
    for text in texts:
        address = Address(text, server=True)
        try:
            address.check()
        except ValueError as exc:
            parser.error(str(exc))
        if address.is_udp and (version or address.pp_name or 'v2') \
                not in ('v2', 'detect'):
            parser.error(f'{text}: UDP datagrams carry only v2 headers')
        addresses.append(address)
    try:
        for address in addresses:
            header_config(args, version, address)
    except (ValueError, TypeError) as exc:
        parser.error(f'--trusted: {exc}')
    return version, addresses


async def _serve(args: argparse.Namespace, version: Optional[str],
                 addresses: list[Address]) -> int:
    loop = asyncio.get_running_loop()
    echo = EchoServer()
    try:
        for address in addresses:
            await echo.listen(address,
                              header_config(args, version, address))
    except (OSError, ValueError) as exc:
        _log.error('cannot start: %s', exc)
        await echo.close()
        return EXIT_FAILURE
    signals = ShutdownSignals(loop, _log)
    _log.info('ready (pid %d, %s)', os.getpid(), loop_name(loop))
    await signals.stopping.wait()
    signals.remove()
    await echo.close()
    _log.info('stopped after %d connection(s)', echo.count)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``proxyprotocol-echo`` with ``argv`` (default: the process's
    arguments); returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    version, addresses = _check(parser, args)
    setup_logging(args.quiet, args.verbose)
    try:
        return run_loop(_serve(args, version, addresses), args.loop)
    except RuntimeError as exc:
        _log.error('%s', exc)
        return EXIT_FAILURE


# -- the 0.4 and 0.11 module helpers -----------------------------------------

def _version_name(pp: ProxyProtocol) -> str:
    if isinstance(pp, ProxyProtocolNoop):
        return 'noop'
    if isinstance(pp, ProxyProtocolV1):
        return 'v1'
    if isinstance(pp, ProxyProtocolV2):
        return 'v2'
    return 'detect'


async def run(*args: Any) -> None:
    """Serve until SIGINT/SIGTERM: ``run(address)`` as in 0.11 (an
    :class:`Address` or its text), or ``run(pp, host, port)`` as in 0.4."""
    if len(args) == 3:
        pp, host, port = args
        version: Optional[str] = _version_name(pp)
        host = f'[{host}]' if ':' in str(host) else host
        address = Address(f'{host}:{port}', server=True)
    elif len(args) == 1:
        version = None
        address = args[0] if isinstance(args[0], Address) \
            else Address(str(args[0]), server=True)
    else:
        raise TypeError('run(address) or run(pp, host, port)')
    namespace = make_parser().parse_args([])
    status = await _serve(namespace, version, [address])
    if status != EXIT_OK:
        raise OSError('the echo server could not start; see the log')


async def run_conn(*args: Any) -> None:
    """Serve one connection: ``run_conn(reader, writer, sock_info)`` as in
    0.11 (the header already read), or ``run_conn(pp, reader, writer)`` as
    in 0.4 (read the header with ``pp`` first)."""
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    info: Union[str, Any]
    if len(args) == 3 and isinstance(args[0], ProxyProtocol):
        pp, reader, writer = args
        result = await asyncio.wait_for(pp.read(reader), DEFAULT_TIMEOUT)
        from ..sock import SocketInfo
        info = SocketInfo.get(writer, result)
    elif len(args) == 3:
        reader, writer, info = args
    else:
        raise TypeError('run_conn(reader, writer, sock_info) or '
                        'run_conn(pp, reader, writer)')
    _log.info('connection received: %s', info)
    try:
        await _echo(reader, writer)
    except (ConnectionError, OSError) as exc:
        _log.info('connection failed: %s', exc)
    finally:
        writer.close()
    _log.info('connection lost')


if __name__ == '__main__':
    sys.exit(main())
