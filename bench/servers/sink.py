"""The benchmark's server side: a sink that is cheap enough never to limit a proxy.

One process, one ``epoll`` loop over non-blocking sockets, no asyncio, so each
connection costs only its system calls and a few Python statements. It listens
on 127.0.0.1 (port given or ephemeral), prints ``READY <port>`` on stdout, and
on SIGTERM prints one JSON line of counters and exits.

Each connection may start with a PROXY header (v1 or v2); the sink skips it and
keeps the first one it sees (``first_header``, hex) so that the run can check
what the proxy sent. Modes:

``short``
    read 100 bytes, answer 100 bytes, close when the client closes.
``bulk``
    discard everything until end of stream (``os.splice`` into ``/dev/null``:
    no copy into this process), then close; counts bytes.
``idle``
    echo whatever arrives (the idle test sends a few bytes once); keep the
    connection open until the client closes it.
``slow``
    a slow reader: at most ``--slow-rate`` bytes per second (read in 64 KiB
    pieces with pauses), until end of stream.

"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Optional

V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'
REQUEST_SIZE = 100
RESPONSE = b'r' * REQUEST_SIZE
SPLICE_CHUNK = 1 << 20

EPOLLIN = select.EPOLLIN
EPOLLRDHUP = select.EPOLLRDHUP


def header_length(data: bytes) -> Optional[int]:
    """Length of the PROXY header at the start of ``data``: 0 when there is
    none, None when more bytes are needed to tell."""
    if data[:1] == b'\r':
        if len(data) < 16:
            return None
        if data[:12] != V2_SIGNATURE:
            return 0
        return 16 + struct.unpack_from('!H', data, 14)[0]
    if data[:1] == b'P':
        if len(data) < 6:
            return None
        if data[:6] != b'PROXY ':
            return 0
        end = data.find(b'\r\n')
        return None if end < 0 else end + 2
    return 0


class Sink:
    """The epoll loop and its per-connection state (kept in dicts by fd)."""

    def __init__(self, mode: str, port: int, slow_rate: int, backlog: int) -> None:
        self.mode = mode
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', port))
        self.listener.listen(backlog)
        self.listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), EPOLLIN)
        self.socks: dict[int, socket.socket] = {}
        self.pending: dict[int, bytes] = {}   # bytes read before the header was done
        self.got: dict[int, int] = {}         # application bytes read so far
        self.slow_rate = slow_rate
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        self.pipe_r, self.pipe_w = os.pipe()
        self.stop = False
        self.stats = {'accepted': 0, 'closed': 0, 'bytes': 0, 'errors': 0,
                      'headers': 0, 'open_max': 0, 'first_header': ''}

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def accept(self) -> None:
        for _ in range(64):
            try:
                conn, _addr = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = conn.fileno()
            self.socks[fd] = conn
            self.pending[fd] = b''
            self.got[fd] = 0
            self.epoll.register(fd, EPOLLIN)
            self.stats['accepted'] += 1
            self.stats['open_max'] = max(self.stats['open_max'], len(self.socks))

    def close(self, fd: int) -> None:
        conn = self.socks.pop(fd)
        self.pending.pop(fd, None)
        self.got.pop(fd, None)
        self.epoll.unregister(fd)
        conn.close()
        self.stats['closed'] += 1

    def skip_header(self, fd: int, data: bytes) -> Optional[bytes]:
        """The application bytes in ``data`` once the header is skipped;
        None while the header is still incomplete."""
        pending = self.pending.get(fd)
        if pending is None:
            return data
        data = pending + data
        length = header_length(data)
        if length is None:
            self.pending[fd] = data
            return None
        if length:
            self.stats['headers'] += 1
            if not self.stats['first_header']:
                self.stats['first_header'] = data[:length].hex()
        del self.pending[fd]
        return data[length:]

    def readable(self, fd: int) -> None:
        conn = self.socks[fd]
        if self.mode == 'bulk' and fd not in self.pending:
            self.discard(fd)
            return
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.stats['errors'] += 1
            self.close(fd)
            return
        if not data:
            self.close(fd)
            return
        app = self.skip_header(fd, data)
        if app is None or not app:
            return
        self.stats['bytes'] += len(app)
        if self.mode == 'short':
            got = self.got[fd] + len(app)
            self.got[fd] = got
            if got == REQUEST_SIZE:
                conn.send(RESPONSE)
        elif self.mode == 'idle':
            conn.send(app)
        elif self.mode == 'slow':
            # 64 KiB per (65536 / rate) seconds: a reader that cannot keep up.
            time.sleep(len(app) / self.slow_rate)

    def discard(self, fd: int) -> None:
        """Move what the socket holds into /dev/null without copying it here."""
        total = 0
        while True:
            try:
                n = os.splice(fd, self.pipe_w, SPLICE_CHUNK,
                              flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                break
            except OSError:
                self.stats['errors'] += 1
                self.close(fd)
                return
            if n == 0:
                self.stats['bytes'] += total
                self.close(fd)
                return
            total += n
            while n:
                n -= os.splice(self.pipe_r, self.devnull, n, flags=os.SPLICE_F_MOVE)
        self.stats['bytes'] += total

    def run(self) -> None:
        listen_fd = self.listener.fileno()
        while not self.stop:
            try:
                events = self.epoll.poll(0.2)
            except InterruptedError:
                continue
            for fd, _ev in events:
                if fd == listen_fd:
                    self.accept()
                elif fd in self.socks:
                    self.readable(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('mode', choices=('short', 'bulk', 'idle', 'slow'))
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--slow-rate', type=int, default=64 << 20,
                        help='bytes per second the slow reader reads')
    parser.add_argument('--backlog', type=int, default=4096)
    args = parser.parse_args()
    sink = Sink(args.mode, args.port, args.slow_rate, args.backlog)

    def on_term(_signum: int, _frame: object) -> None:
        sink.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f'READY {sink.port}', flush=True)
    sink.run()
    sink.stats['open'] = len(sink.socks)
    print(json.dumps(sink.stats), flush=True)
    sys.exit(0)


if __name__ == '__main__':
    main()
