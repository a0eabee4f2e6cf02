"""HAProxy as a real peer, in the foreground (``-db``) with a generated
configuration in the test's temporary directory.

Its listening sockets are created by the test on ephemeral loopback ports
and inherited (``bind fd@N``), so they are ready as soon as it starts and
there is no port race. It is stopped by its PID.

"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import pytest

from support.net import listening_socket
from support.procs import LoggedProcess

#: The HAProxy binary, or ``None`` when it is not installed.
HAPROXY = shutil.which('haproxy') or (
    '/usr/sbin/haproxy' if os.path.exists('/usr/sbin/haproxy') else None)

#: Skip a test that needs HAProxy when it is not installed.
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None,
    reason='haproxy is not installed (apt-get install haproxy)')


class HAProxy(LoggedProcess):
    """HAProxy in the foreground; ``{name}`` fields of ``config`` become
    the descriptors of ``sockets`` (``bind fd@{name}``), which it
    inherits (they are closed here once it has them). Its files are
    named ``{name}.cfg`` and ``{name}.log`` in ``tmp_path``."""

    def __init__(self, tmp_path: Path, config: str,
                 sockets: Optional[dict[str, socket.socket]] = None, *,
                 name: str = 'haproxy') -> None:
        sockets = sockets or {}
        fds = {key: sock.fileno() for key, sock in sockets.items()}
        self.config = config.format(**fds)
        path = tmp_path / f'{name}.cfg'
        path.write_text(self.config)
        self.log_path = tmp_path / f'{name}.log'
        with open(self.log_path, 'wb') as log:
            self.popen = subprocess.Popen(
                [HAPROXY or 'haproxy', '-db', '-f', str(path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=tuple(fds.values()), cwd=tmp_path)
        for sock in sockets.values():
            sock.close()


#: The TCP-mode configuration of :class:`HAProxyV2`.
_V2_CONFIG = """\
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind fd@{{front}}
{extra}    default_backend be
backend be
    server app {server} send-proxy-v2 {server_options}
"""


class HAProxyV2(HAProxy):
    """HAProxy in TCP mode in front of one server, sending it a v2 header.

    Args:
        tmp_path: Where its configuration and log go.
        server: The server's address (``host:port``).
        front: The loopback host HAProxy listens on.
        server_options: More options for the ``server`` line, e.g.
            ``ssl verify none`` or ``proxy-v2-options crc32c``.
        frontend_lines: More lines for the frontend section.

    """

    def __init__(self, tmp_path: Path, server: str, *,
                 front: str = '127.0.0.1',
                 server_options: str = '',
                 frontend_lines: Sequence[str] = ()) -> None:
        assert HAPROXY is not None
        self.front = front
        listener, self.port = listening_socket(front)
        extra = ''.join(f'    {line}\n' for line in frontend_lines)
        config = _V2_CONFIG.format(extra=extra, server=server,
                                   server_options=server_options)
        super().__init__(tmp_path, config, {'front': listener},
                         name=f'haproxy-{self.port}')

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return (self.front, self.port)
