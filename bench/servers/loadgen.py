"""The benchmark's client side: a load generator cheap enough never to limit a proxy.

Like the sink, one ``epoll`` loop over non-blocking sockets, no asyncio. It
connects to 127.0.0.1:PORT and prints one JSON line of results. Modes:

``short``
    ``--concurrency`` clients, each in a loop for ``--duration`` seconds:
    connect, send 100 bytes, read the 100-byte answer, close.
``bulk``
    one connection; ``os.sendfile`` of ``--size`` bytes from an in-memory file
    (no copy through this process), then half-close and wait for the server
    to close: the time covers every byte reaching the sink.
``idle``
    open ``--count`` connections, send 4 bytes on each and read them back (so
    that every connection has carried data both ways), print ``OPEN`` and
    hold them until stdin closes.

"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import socket
import sys
import time

REQUEST = b'q' * 100
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT


def short(port: int, concurrency: int, duration: float) -> dict[str, object]:
    """Closed-loop short connections; returns counts and the achieved rate."""
    epoll = select.epoll()
    socks: dict[int, socket.socket] = {}
    got: dict[int, int] = {}
    done = errors = 0
    address = ('127.0.0.1', port)

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        fd = sock.fileno()
        socks[fd] = sock
        got[fd] = -1
        epoll.register(fd, EPOLLOUT)

    for _ in range(concurrency):
        start()
    t0 = time.perf_counter()
    stop_at = t0 + duration
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        for fd, ev in epoll.poll(0.5):
            sock = socks[fd]
            n = got[fd]
            try:
                if n < 0:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    sock.send(REQUEST)
                    got[fd] = 0
                    epoll.modify(fd, EPOLLIN)
                    continue
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError('closed early')
                n += len(data)
                if n < 100:
                    got[fd] = n
                    continue
                done += 1
            except OSError:
                errors += 1
            epoll.unregister(fd)
            del socks[fd], got[fd]
            sock.close()
            start()
    elapsed = time.perf_counter() - t0
    for sock in socks.values():
        sock.close()
    return {'connections': done, 'errors': errors, 'seconds': elapsed,
            'rate': done / elapsed}


def bulk(port: int, size: int) -> dict[str, object]:
    """One connection carrying ``size`` bytes; returns the throughput."""
    chunk = 64 << 20
    fd = os.memfd_create('bench-bulk')
    os.ftruncate(fd, chunk)
    os.pwrite(fd, b'b' * chunk, 0)
    sock = socket.create_connection(('127.0.0.1', port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    left = size
    while left:
        offset = 0
        this = min(chunk, left)
        while offset < this:
            sent = os.sendfile(sock.fileno(), fd, offset, this - offset)
            offset += sent
        left -= this
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(60)
    while sock.recv(65536):
        pass
    elapsed = time.perf_counter() - t0
    sock.close()
    os.close(fd)
    return {'bytes': size, 'seconds': elapsed, 'bytes_per_second': size / elapsed}


def idle(port: int, count: int) -> dict[str, object]:
    """Open ``count`` connections, exchange 4 bytes on each, then hold them."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(('127.0.0.1', port), timeout=30)
        sock.sendall(b'ping')
        want = 4
        while want:
            data = sock.recv(want)
            if not data:
                raise ConnectionError(f'connection {i} closed')
            want -= len(data)
        socks.append(sock)
    print('OPEN', flush=True)
    sys.stdin.read()
    for sock in socks:
        sock.close()
    return {'connections': count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('mode', choices=('short', 'bulk', 'idle'))
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--duration', type=float, default=5.0)
    parser.add_argument('--size', type=int, default=1 << 30)
    parser.add_argument('--count', type=int, default=2000)
    args = parser.parse_args()
    if args.mode == 'short':
        result = short(args.port, args.concurrency, args.duration)
    elif args.mode == 'bulk':
        result = bulk(args.port, args.size)
    else:
        result = idle(args.port, args.count)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
