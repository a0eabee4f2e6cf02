"""Worker processes: one port, every core.

With ``--workers N`` the server forks N processes after checking its
configuration and reserving its ports. Each worker runs its own event loop
and opens its own listening sockets with ``SO_REUSEPORT`` on the same
addresses, so the kernel spreads new connections across them (UNIX sockets,
which have no ``SO_REUSEPORT``, are opened once and shared). The parent only
supervises: it passes SIGINT and SIGTERM on to the workers, restarts a
worker that dies unexpectedly, and exits when they have all stopped.

"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from types import FrameType
from typing import Callable, Final, Optional

__all__ = ['supervise', 'RESTART_LIMIT']

_log = logging.getLogger('proxyprotocol.server')

#: A worker that dies within this many seconds of starting, this many times
#: in a row, is not restarted again: the whole server stops with an error.
RESTART_LIMIT: Final = 5
_QUICK_DEATH: Final = 2.0
_PR_SET_PDEATHSIG: Final = 1


def _exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1   # pragma: no cover


def _stop_with_parent(parent: int) -> None:   # pragma: no cover - child
    """Have the kernel send SIGTERM to this worker when the supervisor dies,
    even by SIGKILL (Linux ``PR_SET_PDEATHSIG``), so that no worker is left
    holding the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        # The supervisor died before the call above.
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(count: int, worker: Callable[[int], int]) -> int:
    """Fork ``count`` processes that each return ``worker(index)`` as
    their exit status, and watch them until they have all stopped.

    Returns:
        0 when every worker stopped cleanly after a signal, else 1.

    """
    children: dict[int, tuple[int, float]] = {}
    stopping: list[int] = []
    quick_deaths = [0]
    failed = [False]

    def spawn(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:   # pragma: no cover - runs in the child
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            _stop_with_parent(parent)
            status = 1
            try:
                status = worker(index)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children[pid] = (index, time.monotonic())

    def forward(sig: int, frame: Optional[FrameType]) -> None:
        stopping.append(sig)
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(count):
            spawn(index)
        _log.info('%d workers started (pids %s)', count,
                  ' '.join(str(pid) for pid in children))
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:   # pragma: no cover
                break
            if pid not in children:   # pragma: no cover
                continue
            index, started = children.pop(pid)
            code = _exit_code(status)
            if stopping:
                if code != 0:
                    failed[0] = True
                continue
            _log.warning('worker %d (pid %d) stopped with status %d',
                         index, pid, code)
            if time.monotonic() - started < _QUICK_DEATH:
                quick_deaths[0] += 1
            else:
                quick_deaths[0] = 0
            if quick_deaths[0] >= RESTART_LIMIT:
                _log.error('workers keep dying at start; stopping')
                failed[0] = True
                forward(signal.SIGTERM, None)
                continue
            spawn(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed[0] else 0
