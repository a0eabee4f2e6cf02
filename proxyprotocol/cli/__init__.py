"""The ``proxyprotocol`` command: see what is on the wire.

* ``proxyprotocol decode`` explains a header given as hex, in a file or on
  stdin, field by field, or says exactly why it is invalid.
* ``proxyprotocol send`` connects to a server that expects the PROXY
  protocol, sends a header crafted from the command line (any version,
  command, family, addresses and TLVs) and then relays stdin and stdout,
  like ``nc``.
* ``proxyprotocol listen`` accepts connections, prints each header it
  receives and can forward the rest of the stream: a quick look at what a
  load balancer really sends.

Run ``proxyprotocol COMMAND --help`` for the options of each.

"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..__about__ import __version__

__all__ = ['main', 'make_parser']


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the command and its sub-commands."""
    from . import decode
    from . import listen
    from . import send
    parser = argparse.ArgumentParser(
        prog='proxyprotocol',
        description='Decode, send and receive PROXY protocol headers '
        '(v1 and v2) to debug load balancer setups.')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    subparsers = parser.add_subparsers(title='commands', metavar='COMMAND')
    decode.add_parser(subparsers)
    send.add_parser(subparsers)
    listen.add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return
    the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    run = getattr(args, 'run', None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): say no more,
        # not even when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return status
