"""``proxyprotocol send``: connect, send a crafted header, relay stdio.

For testing a server that expects the PROXY protocol: any version, command,
family, protocol, addresses and TLVs (ALPN, authority, unique id, SSL with
its sub-TLVs, NETNS, the AWS, Azure and GCP TLVs, raw ones, NOOP padding)
and a CRC32C. Without ``--source``/``--destination`` the header carries the
connection's own addresses, as a proxy would. The header goes first, in
clear, then (with ``--tls``) the TLS handshake, as HAProxy does with
``send-proxy`` and ``ssl`` on a server line.

After the header, stdin goes to the server and the server's bytes to
stdout; EOF on stdin half-closes the connection (not over TLS), and the
command ends when the server closes. ``--dry-run`` prints the header as hex
instead of connecting, ready for ``proxyprotocol decode``.

"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import sys
from typing import Any, Optional

from ..errors import ProxyProtocolBuildError
from ..header import build_header
from ..result import ProxyResult, ProxyResultLocal
from ..sockaddr import result_from_sockaddrs
from ..tlv import EMPTY_TLV, ProxyProtocolSSLTLV, ProxyProtocolTLV
from .decode import parse_hex
from .endpoints import Endpoint, endpoint_type, parse_header_address
from .format import describe, render
from .relay import close_writer, relay_stdio

__all__ = ['add_parser', 'run', 'build_tlv', 'build_result',
           'header_from_args']

_FAMILIES = {'inet': socket.AF_INET, 'inet6': socket.AF_INET6,
             'unix': socket.AF_UNIX, 'unspec': socket.AF_UNSPEC}
_PROTOCOLS = {'stream': socket.SOCK_STREAM, 'dgram': socket.SOCK_DGRAM,
              'unspec': None}


class UsageError(ValueError):
    """The options do not describe a header that can be sent."""


def _bytes_value(text: str) -> bytes:
    # A value typed by a person: text, or hex after 'hex:'.
    if text.startswith('hex:'):
        return parse_hex(text[4:])
    return text.encode('utf-8')


def _raw_tlv(text: str) -> tuple[int, bytes]:
    type_text, sep, value = text.partition('=')
    if not sep:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected TYPE=HEX, e.g. 0xE4=01ff')
    try:
        tlv_type = int(type_text, 0)
        if not 0 <= tlv_type <= 0xFF:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r}: the type must be a number from 0 to 255') from None
    try:
        return tlv_type, parse_hex(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'{text!r}: {exc}') from None


def _certificate(path: str) -> bytes:
    with open(path, 'rb') as stream:
        data = stream.read()
    if b'-----BEGIN CERTIFICATE-----' in data:
        start = data.index(b'-----BEGIN CERTIFICATE-----')
        end = data.index(b'-----END CERTIFICATE-----', start) + 25
        return ssl.PEM_cert_to_DER_cert(data[start:end].decode('ascii'))
    return data


def _ssl_tlv(args: argparse.Namespace) -> Optional[ProxyProtocolSSLTLV]:
    cert = _certificate(args.ssl_client_cert) \
        if args.ssl_client_cert else None
    texts = (args.ssl_version, args.ssl_cn, args.ssl_cipher,
             args.ssl_sig_alg, args.ssl_key_alg, args.ssl_group,
             args.ssl_sig_scheme)
    wanted = args.ssl or cert is not None or args.ssl_cert_conn \
        or args.ssl_cert_sess or args.ssl_verify is not None \
        or any(t is not None for t in texts)
    if not wanted:
        return None
    with_cert = cert is not None
    return ProxyProtocolSSLTLV(
        has_ssl=True,
        has_cert_conn=args.ssl_cert_conn or with_cert,
        has_cert_sess=args.ssl_cert_sess or with_cert,
        verify=args.ssl_verify if args.ssl_verify is not None else 0,
        version=args.ssl_version, cn=args.ssl_cn, cipher=args.ssl_cipher,
        sig_alg=args.ssl_sig_alg, key_alg=args.ssl_key_alg,
        group=args.ssl_group, sig_scheme=args.ssl_sig_scheme,
        client_cert=cert)


def build_tlv(args: argparse.Namespace) -> ProxyProtocolTLV:
    """The TLVs the options ask for: the typed ones in ascending type
    order, then the ``--tlv`` ones in the order given.

    Raises:
        ProxyProtocolBuildError: A value cannot be encoded.
        OSError: The client certificate file cannot be read.

    """
    typed = ProxyProtocolTLV(
        alpn=_bytes_value(args.alpn) if args.alpn is not None else None,
        authority=args.authority,
        unique_id=_bytes_value(args.unique_id)
        if args.unique_id is not None else None,
        ssl=_ssl_tlv(args),
        netns=args.netns,
        aws_vpce_id=args.aws_vpce_id,
        azure_link_id=args.azure_link_id,
        gcp_psc_connection_id=args.gcp_psc_id)
    entries = list(typed.entries)
    if args.noop is not None:
        entries.append((0x04, bytes(args.noop)))
        entries.sort(key=lambda entry: entry[0])
    entries.extend(args.tlv or ())
    if not entries:
        return EMPTY_TLV
    return ProxyProtocolTLV.from_entries(entries)


def build_result(args: argparse.Namespace, source: Any, dest: Any,
                 tlv: ProxyProtocolTLV) -> ProxyResult:
    """The result to send, from the options and the default addresses
    ``source`` and ``dest`` (the connection's own)."""
    if args.command == 'local':
        return ProxyResultLocal(tlv=tlv)
    unix = args.family == 'unix'
    if (args.source is None) != (args.destination is None):
        raise UsageError('give both --source and --destination, or neither')
    if args.source is not None:
        try:
            source = parse_header_address(args.source, unix=unix)
            dest = parse_header_address(args.destination, unix=unix)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif source is None and args.family != 'unspec':
        raise UsageError('give --source and --destination (there is no '
                         'connection to take the addresses from)')
    family = _FAMILIES[args.family] if args.family else None
    if family is None and isinstance(source, str):
        family = socket.AF_UNIX
    if family in (socket.AF_INET, socket.AF_INET6):
        want = 4 if family == socket.AF_INET else 6
        for address in (source, dest):
            is_ip = isinstance(address, tuple)
            if not is_ip or (':' in address[0]) != (want == 6):
                raise UsageError(f'--family {args.family} needs IPv{want} '
                                 f'addresses, not {address!r}')
    try:
        return result_from_sockaddrs(
            source, dest, family=family,
            protocol=_PROTOCOLS[args.protocol], tlv=tlv)
    except (KeyError, ProxyProtocolBuildError) as exc:
        raise UsageError(f'cannot build the header: {exc}') from None


def header_from_args(args: argparse.Namespace, source: Any = None,
                     dest: Any = None) -> bytes:
    """The header bytes the options describe.

    Raises:
        UsageError: The options contradict each other.

    """
    if args.raw_header is not None:
        return args.raw_header  # type: ignore[no-any-return]
    try:
        tlv = build_tlv(args)
    except (ProxyProtocolBuildError, OSError, ValueError) as exc:
        raise UsageError(f'cannot build the TLVs: {exc}') from None
    if args.version == 1:
        if tlv or args.crc32c:
            raise UsageError('v1 cannot carry TLVs or a CRC32C; use -2')
        if args.command == 'local':
            raise UsageError('v1 cannot send LOCAL; use -2')
        if args.family == 'unix':
            raise UsageError('v1 cannot carry UNIX addresses; use -2, or '
                             '--family unspec for PROXY UNKNOWN')
        if args.protocol == 'dgram':
            raise UsageError('v1 is for TCP only; use -2 for dgram')
    result = build_result(args, source, dest, tlv)
    try:
        return build_header(result, version=args.version, crc32c=args.crc32c)
    except ProxyProtocolBuildError as exc:
        raise UsageError(f'cannot build the header: {exc}') from None


def add_parser(subparsers: argparse._SubParsersAction[
        argparse.ArgumentParser]) -> None:
    """Add the ``send`` command."""
    parser = subparsers.add_parser(
        'send', help='send a crafted header, then relay stdin/stdout',
        description='Connect to a server that expects the PROXY protocol, '
        'send a crafted header, then relay stdin to the server and the '
        "server's replies to stdout, like nc. EOF on stdin half-closes the "
        'connection; the command ends when the server closes.',
        epilog='examples:\n'
        '  printf "GET / HTTP/1.0\\r\\n\\r\\n" | proxyprotocol send -1 '
        '--source 192.0.2.7:4242 \\\n'
        '      --destination 192.0.2.1:80 127.0.0.1:8080\n'
        '  proxyprotocol send --authority example.com --ssl --ssl-version '
        'TLSv1.3 \\\n'
        '      --unique-id hex:0011aabb --crc32c [::1]:8443 < request.txt\n'
        '  proxyprotocol send --dry-run --source 10.0.0.1:1 '
        '--destination 10.0.0.2:2 | proxyprotocol decode\n\n'
        'values of --alpn and --unique-id are text, or hex after "hex:"',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'target', nargs='?', type=endpoint_type(), metavar='TARGET',
        help='HOST:PORT, [IPV6]:PORT, unix:PATH or /PATH')

    header = parser.add_argument_group('the header')
    version = header.add_mutually_exclusive_group()
    version.add_argument('-1', '--v1', dest='version', action='store_const',
                         const=1, help='send a v1 (text) header')
    version.add_argument('-2', '--v2', dest='version', action='store_const',
                         const=2, help='send a v2 (binary) header (default)')
    header.add_argument('--command', choices=('proxy', 'local'),
                        default='proxy', help='v2 command (default: proxy)')
    header.add_argument(
        '--family', choices=tuple(_FAMILIES),
        help='address family (default: from the addresses)')
    header.add_argument(
        '--protocol', choices=tuple(_PROTOCOLS), default='stream',
        help='transport protocol (default: stream)')
    header.add_argument(
        '-s', '--source', metavar='ADDRESS',
        help="the client's address: IP:PORT, [IPV6]:PORT, or a path with "
        '--family unix (default: this connection\'s local address)')
    header.add_argument(
        '-d', '--destination', metavar='ADDRESS',
        help='the address the client connected to (default: the '
        "server's address)")
    header.add_argument(
        '--raw-header', type=parse_hex, metavar='HEX',
        help='send these bytes as the header instead (for testing how a '
        'server rejects a bad one)')

    tlvs = parser.add_argument_group('v2 TLVs')
    tlvs.add_argument('--alpn', metavar='PROTOCOL',
                      help='PP2_TYPE_ALPN, e.g. h2')
    tlvs.add_argument('--authority', metavar='HOST',
                      help='PP2_TYPE_AUTHORITY: the host name (SNI)')
    tlvs.add_argument('--unique-id', metavar='ID',
                      help='PP2_TYPE_UNIQUE_ID, up to 128 bytes')
    tlvs.add_argument('--netns', metavar='NAME',
                      help='PP2_TYPE_NETNS: the network namespace')
    tlvs.add_argument('--noop', type=int, metavar='LENGTH',
                      help='PP2_TYPE_NOOP padding of LENGTH zero bytes')
    tlvs.add_argument('--aws-vpce-id', metavar='ID',
                      help='AWS VPC endpoint id (type 0xEA, sub-type 0x01)')
    tlvs.add_argument('--azure-link-id', type=int, metavar='N',
                      help='Azure Private Link id (type 0xEE, sub-type 1)')
    tlvs.add_argument('--gcp-psc-id', type=int, metavar='N',
                      help='GCP Private Service Connect id (type 0xE0)')
    tlvs.add_argument(
        '--tlv', type=_raw_tlv, action='append', metavar='TYPE=HEX',
        help='any TLV, e.g. 0xF0=cafe; repeat for more, sent in order '
        'after the others')
    tlvs.add_argument('--crc32c', action='store_true',
                      help='end with a PP2_TYPE_CRC32C of the header')

    ssl_tlv = parser.add_argument_group(
        'the PP2_TYPE_SSL TLV (any of these adds it)')
    ssl_tlv.add_argument('--ssl', action='store_true',
                         help='the client connected over TLS')
    ssl_tlv.add_argument('--ssl-version', metavar='VERSION',
                         help='e.g. TLSv1.3')
    ssl_tlv.add_argument('--ssl-cn', metavar='CN',
                         help="the client certificate's Common Name")
    ssl_tlv.add_argument('--ssl-cipher', metavar='NAME',
                         help='e.g. TLS_AES_256_GCM_SHA384')
    ssl_tlv.add_argument('--ssl-sig-alg', metavar='NAME',
                         help='e.g. SHA256')
    ssl_tlv.add_argument('--ssl-key-alg', metavar='NAME',
                         help='e.g. RSA2048')
    ssl_tlv.add_argument('--ssl-group', metavar='NAME',
                         help='e.g. X25519')
    ssl_tlv.add_argument('--ssl-sig-scheme', metavar='NAME',
                         help='e.g. rsa_pss_rsae_sha256')
    ssl_tlv.add_argument(
        '--ssl-client-cert', metavar='FILE',
        help='a client certificate (PEM or DER) to carry; sets the '
        'CERT_CONN and CERT_SESS flags')
    ssl_tlv.add_argument('--ssl-cert-conn', action='store_true',
                         help='set PP2_CLIENT_CERT_CONN')
    ssl_tlv.add_argument('--ssl-cert-sess', action='store_true',
                         help='set PP2_CLIENT_CERT_SESS')
    ssl_tlv.add_argument(
        '--ssl-verify', type=int, metavar='N',
        help='the verify field: 0 verified (default), else the error')

    conn = parser.add_argument_group('the connection')
    conn.add_argument('--tls', action='store_true',
                      help='start TLS after the header')
    conn.add_argument('--tls-ca', metavar='FILE',
                      help='CA certificates to verify the server with '
                      '(default: the system ones)')
    conn.add_argument('--tls-insecure', action='store_true',
                      help='do not verify the server certificate')
    conn.add_argument('--tls-sni', metavar='NAME',
                      help='the server name to send and verify (default: '
                      'the target host)')
    conn.add_argument('--tls-cert', metavar='FILE',
                      help='a client certificate chain (PEM)')
    conn.add_argument('--tls-key', metavar='FILE',
                      help='the key of --tls-cert, if not in that file')
    conn.add_argument('--timeout', type=float, default=10.0,
                      metavar='SECONDS',
                      help='connect timeout (default: %(default)s)')

    out = parser.add_argument_group('output')
    out.add_argument('--dry-run', action='store_true',
                     help='print the header as hex and exit; no connection')
    out.add_argument('-v', '--verbose', action='store_true',
                     help='describe the header sent on stderr')
    parser.set_defaults(run=run, version=2)


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=args.tls_ca)
    if args.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if args.tls_cert:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


def _connect(target: Endpoint, timeout: float) -> socket.socket:
    if target.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target.path)
        except BaseException:
            sock.close()
            raise
        return sock
    assert target.port is not None
    return socket.create_connection((target.host, target.port), timeout)


async def _session(sock: socket.socket, args: argparse.Namespace) -> int:
    context = _tls_context(args) if args.tls else None
    hostname = None
    if context is not None:
        target: Endpoint = args.target
        hostname = args.tls_sni or target.host or ''
        if not hostname and context.check_hostname:
            raise UsageError('give --tls-sni (or --tls-insecure) for TLS '
                             'over a UNIX socket')
    sock.setblocking(False)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=hostname,
        ssl_handshake_timeout=args.timeout if context else None),
        args.timeout + 1)
    try:
        await relay_stdio(reader, writer, stdin_fd=sys.stdin.fileno(),
                          stdout=sys.stdout.buffer)
    finally:
        await close_writer(writer)
    return 0


def _fail(message: str, status: int) -> int:
    print(f'proxyprotocol send: error: {message}', file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``send``; return the exit status."""
    if args.dry_run:
        try:
            header = header_from_args(args)
        except UsageError as exc:
            return _fail(str(exc), 2)
        print(header.hex())
        return 0
    if args.target is None:
        return _fail('a TARGET is needed (or --dry-run)', 2)
    try:
        sock = _connect(args.target, args.timeout)
    except OSError as exc:
        return _fail(f'cannot connect to {args.target}: {exc}', 1)
    try:
        try:
            header = header_from_args(args, sock.getsockname(),
                                      sock.getpeername())
        except UsageError as exc:
            return _fail(str(exc), 2)
        if args.verbose:
            from .decode import decode_bytes
            described = describe(header, decode_bytes(header))
            described['trailing_data'] = None
            sys.stderr.write(render(described, header))
        sock.sendall(header)
        return asyncio.run(_session(sock, args))
    except UsageError as exc:
        return _fail(str(exc), 2)
    except (OSError, asyncio.TimeoutError) as exc:
        return _fail(f'connection to {args.target}: {exc or "timed out"}', 1)
    finally:
        sock.close()
