"""Socket readiness for the relay, with as few system calls as possible.

The relay works the way HAProxy does: it tries a read or a write at once and
waits for readiness only after the kernel said "would block". What it needs
from a poller is therefore *edges*: "this socket has become readable (or
writable, or its peer has closed)".

:class:`EpollPoller` (Linux) gives exactly that: one ``epoll`` set in
edge-triggered mode, each socket registered once for input, output and
peer-close, never modified, and dropped by the kernel when the socket is
closed; two ``epoll_ctl`` calls per proxied connection in all. The set's own
descriptor is watched by the asyncio loop (``add_reader``), so it works under
uvloop and the standard loop alike.

:class:`LoopPoller` is the portable fallback on the loop's own
``add_reader``/``add_writer`` (level-triggered): the relay then says what
it wants with :meth:`Poller.want`, which costs a registration change each
time; :class:`EpollPoller` ignores those calls.

"""

from __future__ import annotations

import asyncio
import os
import select
from typing import Callable, Final, Optional

__all__ = ['Poller', 'EpollPoller', 'LoopPoller', 'make_poller', 'IN', 'OUT',
           'ERR', 'HUP', 'RDHUP', 'READ_EVENTS', 'WRITE_EVENTS']

# The event bits, with Linux epoll's values.
IN: Final = 0x001
OUT: Final = 0x004
ERR: Final = 0x008
HUP: Final = 0x010
RDHUP: Final = 0x2000
_ET: Final = 1 << 31

#: Events after which a read must be tried.
READ_EVENTS: Final = IN | ERR | HUP | RDHUP
#: Events after which a write must be tried.
WRITE_EVENTS: Final = OUT | ERR | HUP

#: The most events taken from the kernel per wake-up.
_MAX_EVENTS: Final = 1024

Handler = Callable[[int], None]


class Poller:
    """Calls ``handler(events)`` when a registered socket changes state."""

    #: Whether events are edges (each change reported once).
    edge = False

    def register(self, fd: int, handler: Handler, *, read: bool = False,
                 write: bool = False) -> None:
        """Watch ``fd`` (level-triggered pollers: for ``read``/``write``)."""
        raise NotImplementedError

    def forget(self, fd: int) -> None:
        """Stop watching ``fd``; call before closing it."""
        raise NotImplementedError

    def want(self, fd: int, read: bool, write: bool) -> None:
        """What to be told about ``fd`` (level-triggered pollers only)."""

    def close(self) -> None:
        """Stop watching everything."""


class EpollPoller(Poller):
    """An edge-triggered ``epoll`` set inside the asyncio loop (Linux)."""

    edge = True

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._register = self._epoll.register
        self._handlers: dict[int, Handler] = {}
        self._forgotten: set[int] = set()
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def register(self, fd: int, handler: Handler, *, read: bool = False,
                 write: bool = False) -> None:
        self._handlers[fd] = handler
        self._register(fd, IN | OUT | RDHUP | _ET)

    def forget(self, fd: int) -> None:
        # The kernel drops a closed socket from the set by itself; only an
        # event already taken for it in this round must be skipped.
        if self._handlers.pop(fd, None) is not None:
            self._forgotten.add(fd)

    def want(self, fd: int, read: bool, write: bool) -> None:
        pass

    def _dispatch(self) -> None:
        handlers = self._handlers
        forgotten = self._forgotten
        events = self._epoll.poll(0, _MAX_EVENTS)
        for fd, event in events:
            if forgotten and fd in forgotten:
                continue
            handler = handlers.get(fd)
            if handler is not None:
                handler(event)
        forgotten.clear()

    def close(self) -> None:
        if not self._epoll.closed:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._handlers.clear()


class LoopPoller(Poller):
    """The event loop's ``add_reader``/``add_writer`` (any platform)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._handlers: dict[int, Handler] = {}
        self._interest: dict[int, int] = {}

    def register(self, fd: int, handler: Handler, *, read: bool = False,
                 write: bool = False) -> None:
        self._handlers[fd] = handler
        self._interest[fd] = 0
        self.want(fd, read, write)

    def forget(self, fd: int) -> None:
        interest = self._interest.pop(fd, 0)
        self._handlers.pop(fd, None)
        if interest & IN:
            self.loop.remove_reader(fd)
        if interest & OUT:
            self.loop.remove_writer(fd)

    def want(self, fd: int, read: bool, write: bool) -> None:
        old = self._interest.get(fd)
        if old is None:
            return
        new = (IN if read else 0) | (OUT if write else 0)
        if new == old:
            return
        self._interest[fd] = new
        handler = self._handlers[fd]
        loop = self.loop
        if new & IN and not old & IN:
            loop.add_reader(fd, handler, IN)
        elif old & IN and not new & IN:
            loop.remove_reader(fd)
        if new & OUT and not old & OUT:
            loop.add_writer(fd, handler, OUT)
        elif old & OUT and not new & OUT:
            loop.remove_writer(fd)

    def close(self) -> None:
        for fd in list(self._interest):
            self.forget(fd)


def make_poller(loop: asyncio.AbstractEventLoop,
                kind: Optional[str] = None) -> Poller:
    """An :class:`EpollPoller` where ``epoll`` exists, else a
    :class:`LoopPoller`; ``kind`` (or the environment variable
    ``PROXYPROTOCOL_POLLER``) may force ``'epoll'`` or ``'loop'``."""
    kind = kind or os.environ.get('PROXYPROTOCOL_POLLER') or 'auto'
    if kind == 'loop' or (kind == 'auto' and not hasattr(select, 'epoll')):
        return LoopPoller(loop)
    return EpollPoller(loop)
