"""nginx as a real peer, in the foreground with a generated configuration
in the test's temporary directory; its listening sockets are inherited
(the ``NGINX`` variable) and it is stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from support.procs import LoggedProcess

NGINX_MODULES = Path('/usr/lib/nginx/modules')

#: Skip a test that needs nginx when it is not installed.
needs_nginx = pytest.mark.skipif(
    shutil.which('nginx') is None,
    reason='nginx is not installed (apt-get install nginx)')
#: Skip a test that needs nginx's stream module when it is not installed.
needs_stream = pytest.mark.skipif(
    not (NGINX_MODULES / 'ngx_stream_module.so').exists(),
    reason='the nginx stream module is not installed '
    '(apt-get install libnginx-mod-stream)')


class Nginx(LoggedProcess):
    """nginx in the foreground (a master and one worker) with ``body`` as
    the main part of its configuration; ``sockets`` are inherited (nginx
    matches them to its ``listen`` lines by address; nginx 1.22 crashes on
    inherited sockets with ``master_process off``)."""

    def __init__(self, tmp_path: Path, body: str,
                 sockets: tuple[socket.socket, ...] = (),
                 stream: bool = False) -> None:
        prefix = tmp_path / 'nginx'
        for sub in ('logs', 'tmp'):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        modules = ''
        if stream and (NGINX_MODULES / 'ngx_stream_module.so').exists():
            modules = f'load_module {NGINX_MODULES}/ngx_stream_module.so;\n'
        conf = prefix / 'nginx.conf'
        user = 'user root;\n' if os.geteuid() == 0 else ''
        conf.write_text(
            f'{modules}daemon off;\nworker_processes 1;\n{user}'
            f'pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log '
            f'info;\nevents {{ worker_connections 256; }}\n{body}\n')
        self.log_path = prefix / 'logs' / 'error.log'
        self.log_path.touch()
        fds = [sock.fileno() for sock in sockets]
        env = {**os.environ}
        if fds:
            env['NGINX'] = ';'.join(str(fd) for fd in fds) + ';'
        with open(prefix / 'logs' / 'stderr.log', 'wb') as log:
            self.popen = subprocess.Popen(
                ['nginx', '-p', str(prefix), '-c', str(conf), '-e',
                 str(self.log_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=tuple(fds), env=env, cwd=prefix)
        for sock in sockets:
            sock.close()

    @staticmethod
    def temp_paths(tmp_path: Path) -> str:
        """Configuration lines that keep nginx's files in the prefix."""
        tmp = tmp_path / 'nginx' / 'tmp'
        return (f'client_body_temp_path {tmp}/body; proxy_temp_path '
                f'{tmp}/proxy; fastcgi_temp_path {tmp}/fcgi; '
                f'uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi; '
                f'access_log off;')
