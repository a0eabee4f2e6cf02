"""``proxyprotocol listen``: print the header of every connection.

A quick way to see what a load balancer really sends: point its backend at
this command. Each connection's header is read under a timeout and printed
(text, or one JSON object per line with ``--json``); then the rest of the
stream is discarded, echoed back (``--echo``) or forwarded to a target
(``--forward``, both directions, optionally with the original header in
front for a backend that expects it too).

"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from contextlib import suppress
from typing import Any, Optional, TextIO, Union

from ..errors import NeedMore, ProxyProtocolError
from ..header import ParsedHeader, parse_header
from ..v2 import MAX_V2_LENGTH
from .endpoints import Endpoint, endpoint_type
from .format import describe, format_address, render_lines
from .relay import CHUNK_SIZE, close_writer, pipe

__all__ = ['add_parser', 'run', 'Listener']


def add_parser(subparsers: argparse._SubParsersAction[
        argparse.ArgumentParser]) -> None:
    """Add the ``listen`` command."""
    parser = subparsers.add_parser(
        'listen', help='accept connections and print their headers',
        description='Accept connections, print the PROXY protocol header '
        'each one starts with, then discard, echo or forward the rest of '
        'the stream.',
        epilog='examples:\n'
        '  proxyprotocol listen 127.0.0.1:9000\n'
        '  proxyprotocol listen --json --forward 127.0.0.1:8080 :9000\n'
        '  proxyprotocol listen --forward 127.0.0.1:8443 --keep-header '
        'unix:/run/pp.sock',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'address', type=endpoint_type(default_host='127.0.0.1'),
        metavar='ADDRESS',
        help='where to listen: HOST:PORT, [IPV6]:PORT, PORT (on 127.0.0.1),'
        ' unix:PATH or /PATH; port 0 picks a free one')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object per line and event')
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        '--forward', type=endpoint_type(), metavar='TARGET',
        help='relay the rest of each stream to TARGET and back')
    action.add_argument('--echo', action='store_true',
                        help='send the rest of each stream back')
    parser.add_argument(
        '--keep-header', action='store_true',
        help='with --forward, send the original header to TARGET first')
    parser.add_argument(
        '--show-data', action='store_true',
        help='print what the client sends after the header')
    parser.add_argument(
        '--timeout', type=float, default=10.0, metavar='SECONDS',
        help='give up on a header not complete by then (default: '
        '%(default)s; 0: wait forever)')
    parser.add_argument(
        '--versions', choices=('1', '2', 'any'), default='any',
        help='the versions to accept (default: any)')
    parser.add_argument(
        '--max-length', type=int, default=MAX_V2_LENGTH, metavar='BYTES',
        help='the longest v2 header to accept (default: %(default)s)')
    parser.add_argument(
        '--count', type=int, default=0, metavar='N',
        help='exit after N connections have closed (default: never)')
    parser.set_defaults(run=run)


def _name(address: Any) -> str:
    if address in (None, '', b''):
        return '(unnamed)'
    if isinstance(address, bytes):
        address = address.decode('utf-8', 'backslashreplace')
    return format_address(address) or '(unnamed)'


class Listener:
    """The state of one ``listen`` run: options, output and connections."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.versions = (1, 2) if args.versions == 'any' \
            else (int(args.versions),)
        self.next_id = 0
        self.closed = 0
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    def emit(self, conn_id: int, event: str, fields: dict[str, Any],
             lines: list[str]) -> None:
        """Print one event, as JSON or as text lines tagged with the
        connection number, in one write so that connections do not mix."""
        if self.args.json:
            record = {'event': event, 'connection': conn_id}
            record.update(fields)
            text = json.dumps(record) + '\n'
        else:
            text = ''.join(f'[{conn_id}] {line}\n' for line in lines)
        self.out.write(text)
        self.out.flush()

    async def read_header(self, reader: asyncio.StreamReader,
                          received: bytearray
                          ) -> Union[ParsedHeader, NeedMore,
                                     ProxyProtocolError]:
        """Read until the header is complete, invalid, or the stream ends;
        everything read is in ``received``."""
        outcome: Union[ParsedHeader, NeedMore, ProxyProtocolError]
        outcome = NeedMore(8)
        while True:
            data = await reader.read(CHUNK_SIZE)
            if not data:
                return outcome
            received += data
            try:
                outcome = parse_header(received, versions=self.versions,
                                       max_length=self.args.max_length)
            except ProxyProtocolError as exc:
                return exc
            if isinstance(outcome, ParsedHeader):
                return outcome

    async def handle(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """Serve one connection."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.next_id += 1
        conn_id = self.next_id
        try:
            await self._serve(conn_id, reader, writer)
        except (OSError, asyncio.TimeoutError) as exc:
            self.emit(conn_id, 'error', {'message': str(exc)},
                      [f'error: {exc}'])
        finally:
            await close_writer(writer)
            if task is not None:
                self.tasks.discard(task)
            self.closed += 1
            if self.args.count and self.closed >= self.args.count:
                self.stop.set()

    async def _serve(self, conn_id: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        peer = _name(writer.get_extra_info('peername'))
        local = _name(writer.get_extra_info('sockname'))
        received = bytearray()
        timeout = self.args.timeout or None
        reason = None
        try:
            outcome = await asyncio.wait_for(
                self.read_header(reader, received), timeout)
        except asyncio.TimeoutError:
            reason = 'timeout'
            outcome = NeedMore(1)
            try:
                outcome = parse_header(received, versions=self.versions,
                                       max_length=self.args.max_length)
            except ProxyProtocolError as exc:  # pragma: no cover
                outcome = exc
        data = bytes(received)
        described = describe(data, outcome)
        if isinstance(outcome, NeedMore) and reason is None:
            reason = 'eof'
        trailing = b''
        if isinstance(outcome, ParsedHeader):
            trailing = data[outcome.length:]
        described['trailing_data'] = None
        lines = [f'connection from {peer} to {local}']
        if reason == 'timeout':
            lines.append(f'no complete header within {self.args.timeout:g} '
                         f'seconds ({len(data)} bytes received)')
        elif reason == 'eof':
            lines.append(f'the client closed after {len(data)} bytes, '
                         'before the header was complete')
        lines.extend(render_lines(described, data))
        fields = {'peer': peer, 'local': local, 'reason': reason}
        fields.update(described)
        self.emit(conn_id, 'header', fields, lines)
        if not isinstance(outcome, ParsedHeader):
            return
        header = data[:outcome.length]
        sent_in, sent_out = await self._after_header(
            conn_id, reader, writer, header, trailing)
        self.emit(conn_id, 'closed',
                  {'bytes_from_client': sent_in, 'bytes_to_client': sent_out},
                  [f'closed: {sent_in} bytes from the client after the '
                   f'header, {sent_out} bytes to it'])

    def _show(self, conn_id: int, direction: str) -> Any:
        if not self.args.show_data:
            return None

        def show(data: bytes) -> None:
            preview = repr(data[:200])[1:] + ('...' if len(data) > 200
                                              else '')
            self.emit(conn_id, 'data',
                      {'direction': direction, 'length': len(data),
                       'hex': data.hex()},
                      [f'{direction} {len(data)} bytes: {preview}'])
        return show

    async def _after_header(self, conn_id: int,
                            reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, header: bytes,
                            trailing: bytes) -> tuple[int, int]:
        args = self.args
        show_in = self._show(conn_id, 'client')
        if trailing and show_in is not None:
            show_in(trailing)
        if args.forward is not None:
            try:
                target_reader, target_writer = await asyncio.wait_for(
                    _open(args.forward), 10)
            except (OSError, asyncio.TimeoutError) as exc:
                raise OSError(f'cannot forward to {args.forward}: '
                              f'{exc or "timed out"}') from None
            try:
                if args.keep_header:
                    target_writer.write(header)
                target_writer.write(trailing)
                await target_writer.drain()
                sent_in, sent_out = await asyncio.gather(
                    pipe(reader, target_writer, on_data=show_in),
                    pipe(target_reader, writer,
                         on_data=self._show(conn_id, 'server')))
            finally:
                await close_writer(target_writer)
            return len(trailing) + sent_in, sent_out
        if args.echo:
            writer.write(trailing)
            await writer.drain()
            echoed = await pipe(reader, writer, on_data=show_in)
            return len(trailing) + echoed, len(trailing) + echoed
        total = len(trailing)
        while True:
            data = await reader.read(CHUNK_SIZE)
            if not data:
                return total, 0
            total += len(data)
            if show_in is not None:
                show_in(data)


async def _open(target: Endpoint) -> tuple[asyncio.StreamReader,
                                           asyncio.StreamWriter]:
    if target.path is not None:
        return await asyncio.open_unix_connection(target.path)
    return await asyncio.open_connection(target.host, target.port)


async def _serve(args: argparse.Namespace, out: TextIO) -> int:
    listener = Listener(args, out)
    address: Endpoint = args.address
    server: asyncio.AbstractServer
    if address.path is not None:
        if not address.path.startswith('\x00') \
                and os.path.exists(address.path):
            # A socket file left by an earlier run would make bind fail.
            if not _is_stale_socket(address.path):
                print(f'proxyprotocol listen: error: {address.path} exists',
                      file=sys.stderr)
                return 1
            os.unlink(address.path)
        server = await asyncio.start_unix_server(listener.handle,
                                                 address.path)
    else:
        server = await asyncio.start_server(listener.handle, address.host,
                                            address.port)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, listener.stop.set)
    names = [str(address) if address.path is not None
             else _name(sock.getsockname()) for sock in server.sockets]
    print(f'listening on {", ".join(names)}', file=sys.stderr, flush=True)
    try:
        async with server:
            await listener.stop.wait()
    finally:
        for task in list(listener.tasks):
            task.cancel()
        if listener.tasks:
            await asyncio.wait(list(listener.tasks), timeout=5)
        if address.path is not None and not address.path.startswith('\x00'):
            with suppress(OSError):
                os.unlink(address.path)
    return 0


def _is_stale_socket(path: str) -> bool:
    # A socket file nobody listens on any more.
    import stat
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Run ``listen`` until interrupted (or ``--count`` connections)."""
    if args.keep_header and args.forward is None:
        print('proxyprotocol listen: error: --keep-header needs --forward',
              file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, out or sys.stdout))
    except OSError as exc:
        print(f'proxyprotocol listen: error: {exc}', file=sys.stderr)
        return 1
