"""A reference point for the bulk benchmark: the least a user-space relay
can do.

It accepts one connection on 127.0.0.1:PORT, connects to 127.0.0.1:SINK,
sends a v2 LOCAL header, then moves the client's bytes to the sink with
blocking ``os.splice`` calls through a 1 MiB pipe (no event loop, no Python
per byte, no copy), and half-closes. Whatever throughput it reaches is what
the kernel allows for one extra TCP hop on this machine; a proxy cannot do
better with splice, only worse.

    python splice_relay.py PORT SINK_PORT

"""

from __future__ import annotations

import fcntl
import os
import socket
import sys

V2_LOCAL = b'\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00'


def main() -> None:
    port, sink = int(sys.argv[1]), int(sys.argv[2])
    with socket.create_server(('127.0.0.1', port)) as listener:
        print('READY', flush=True)
        client, _ = listener.accept()
    server = socket.create_connection(('127.0.0.1', sink))
    server.sendall(V2_LOCAL)
    pipe_r, pipe_w = os.pipe()
    try:
        fcntl.fcntl(pipe_w, getattr(fcntl, 'F_SETPIPE_SZ', 1031), 1 << 20)
    except OSError:
        pass
    while True:
        moved = os.splice(client.fileno(), pipe_w, 1 << 20,
                          flags=os.SPLICE_F_MOVE)
        if not moved:
            break
        while moved:
            moved -= os.splice(pipe_r, server.fileno(), moved,
                               flags=os.SPLICE_F_MOVE)
    server.shutdown(socket.SHUT_WR)
    server.recv(1)
    client.close()
    server.close()


if __name__ == '__main__':
    main()
