"""Event loops for the tests: a fresh loop per test (asyncio or uvloop),
its run bounded in time, leftover tasks cancelled."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional, TypeVar

import pytest

T = TypeVar('T')

#: The bound on a whole test's event loop, in seconds.
RUN_LIMIT = 90.0
#: The bound on cancelling the tasks a test left behind, in seconds.
CLEANUP_WAIT = 15.0

try:
    import uvloop as _uvloop
except ImportError:   # pragma: no cover - optional
    _uvloop = None  # type: ignore[assignment]
#: The ``uvloop`` module, or ``None`` when it is not installed.
UVLOOP: Optional[Any] = _uvloop
HAS_UVLOOP = UVLOOP is not None

#: The event loops a test can run on (uvloop when it is installed).
LOOPS = [
    pytest.param('asyncio', id='asyncio'),
    pytest.param('uvloop', id='uvloop', marks=pytest.mark.skipif(
        not HAS_UVLOOP, reason='uvloop is not installed')),
]


def new_loop(kind: str = 'asyncio') -> asyncio.AbstractEventLoop:
    """A new event loop of the given kind."""
    if kind == 'uvloop':
        assert UVLOOP is not None
        loop: asyncio.AbstractEventLoop = UVLOOP.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def run(main: Callable[[], Awaitable[T]], loop_kind: str = 'asyncio', *,
        errors: Optional[list[dict[str, Any]]] = None,
        limit: float = RUN_LIMIT) -> T:
    """Run ``main()`` on a fresh loop, bounded by ``limit`` seconds; tasks
    left over are cancelled (within :data:`CLEANUP_WAIT`).

    Exceptions the loop reports to its exception handler are appended to
    ``errors`` when it is given (else the default handler logs them).

    """
    loop = new_loop(loop_kind)
    if errors is not None:
        def handler(_: asyncio.AbstractEventLoop,
                    context: dict[str, Any]) -> None:
            errors.append(context)
        loop.set_exception_handler(handler)

    async def bounded() -> T:
        return await asyncio.wait_for(main(), limit)
    try:
        return loop.run_until_complete(bounded())
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(
                asyncio.wait(pending, timeout=CLEANUP_WAIT))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
