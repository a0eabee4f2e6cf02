"""What the two reference servers' command lines have in common.

Logging to stderr at a chosen verbosity, the event loop (uvloop when it is
installed, unless told otherwise), argument types that explain themselves,
and the signals that stop a server: the first SIGINT or SIGTERM starts a
graceful shutdown, a second one makes it immediate.

"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys
from typing import Any, Callable, Coroutine, Optional, TypeVar

from ..__about__ import __version__

__all__ = ['add_common_arguments', 'setup_logging', 'run_loop', 'loop_name',
           'seconds', 'positive_int', 'ShutdownSignals', 'raise_fd_limit',
           'LOG_FORMAT', 'EXIT_OK', 'EXIT_FAILURE', 'EXIT_USAGE']

#: As 0.4 and 0.11 logged, with the level added.
LOG_FORMAT = '%(asctime)s %(name)s %(levelname)s %(message)s'

#: Exit statuses: clean stop; could not start (bind, resolve, TLS files);
#: bad command line (argparse's own status).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_T = TypeVar('_T')


def seconds(text: str) -> float:
    """An argparse type: a non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a number of seconds') from None
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of '
                                         'seconds from 0 up')
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a whole number') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is less than 1')
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--version``, ``-q``/``-v`` and ``--loop``."""
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__} (proxy-protocol)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('-q', '--quiet', action='store_true',
                       help='log errors only')
    group.add_argument('-v', '--verbose', action='count', default=0,
                       help='log more: -v adds a line per connection and '
                       'failure details (DEBUG)')
    parser.add_argument('--loop', choices=('auto', 'asyncio', 'uvloop'),
                        default='auto',
                        help='event loop: uvloop when installed (auto, the '
                        'default), or the standard asyncio loop')


def setup_logging(quiet: bool = False, verbose: int = 0) -> None:
    """Log to stderr: errors only, INFO (default) or DEBUG."""
    level = logging.ERROR if quiet else \
        logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def _loop_factory(choice: str) -> Optional[Callable[[], asyncio.AbstractEventLoop]]:
    if choice == 'asyncio':
        return None
    try:
        import uvloop
    except ImportError:
        if choice == 'uvloop':
            raise RuntimeError('--loop uvloop: uvloop is not installed '
                               '(pip install "proxy-protocol[uvloop]")')
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``'uvloop'`` or ``'asyncio'``, for the start-up log line."""
    return 'uvloop' if type(loop).__module__.startswith('uvloop') \
        else 'asyncio'


def run_loop(main: Coroutine[Any, Any, _T], choice: str = 'auto') -> _T:
    """Run ``main`` on a new event loop of the chosen kind."""
    factory = _loop_factory(choice)
    if factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()   # pragma: no cover - Python 3.10
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit (as HAProxy
    does); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    return soft


class ShutdownSignals:
    """SIGINT and SIGTERM for a running loop: the first sets
    :attr:`stopping`, the second :attr:`forced`."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 logger: logging.Logger) -> None:
        self.loop = loop
        self.logger = logger
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()
        self.signals = (signal.SIGINT, signal.SIGTERM)
        for sig in self.signals:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if not self.stopping.is_set():
            self.logger.info('%s: shutting down (pid %d)', name, os.getpid())
            self.stopping.set()
        else:
            self.logger.info('%s again: closing at once', name)
            self.forced.set()

    def remove(self) -> None:
        for sig in self.signals:
            self.loop.remove_signal_handler(sig)
