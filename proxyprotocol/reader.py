"""Read a header from an asyncio stream: the 0.11 ``ProxyProtocolReader``.

:meth:`ProxyProtocolReader.read` reads exactly one header from a stream,
never past it. :meth:`ProxyProtocolReader.get_callback` makes an
:func:`asyncio.start_server` callback that reads the header (under a
timeout) and then runs the application's callback with a
:class:`~proxyprotocol.sock.SocketInfo`.

Fixed from 0.11:

* End of stream (or a reset) before the header is whole raises
  :class:`~proxyprotocol.acceptor.ProxyProtocolEOFError`, which is both a
  :class:`~proxyprotocol.errors.ProxyProtocolError` and the
  :class:`asyncio.IncompleteReadError` 0.11 raised. 0.11 spun the event loop
  forever on a v1 line cut short by a half-close.
* The timeout always applies (None means
  :data:`~proxyprotocol.policy.DEFAULT_TIMEOUT`, not "wait forever").
* After a failed header the connection is closed and the callback is not
  called. The callback's task is kept referenced, and an exception it
  raises is reported to the event loop's exception handler.

This reader trusts every peer. For an allowlist of trusted proxies use
:mod:`proxyprotocol.aio`.

"""

from __future__ import annotations

import asyncio
import logging
from asyncio import StreamReader, StreamWriter
from functools import partial
from typing import Any, Awaitable, Callable, Coroutine, Final, Union
from uuid import uuid4

from typing_extensions import TypeAlias

from .acceptor import ProxyProtocolEOFError
from .base import ProxyProtocol
from .errors import ProxyProtocolIncompleteError, ProxyProtocolWantRead
from .policy import DEFAULT_TIMEOUT
from .result import ProxyResult
from .sock import SocketInfo
from .typing import StreamReaderProtocol

__all__ = ['ProxyProtocolReader']

_log = logging.getLogger(__name__)

_Callback: TypeAlias = Callable[
    [StreamReader, StreamWriter], Awaitable[None]]
_WrappedCallback: TypeAlias = Callable[
    [StreamReader, StreamWriter, SocketInfo], Coroutine[Any, Any, None]]


class ProxyProtocolReader:
    """Reads a PROXY protocol header from a stream.

    Args:
        pp: The implementation (v1, v2, detect or noop).

    """

    def __init__(self, pp: ProxyProtocol) -> None:
        super().__init__()
        self.pp: Final = pp
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle_want(self, reader: StreamReaderProtocol,
                           want_read: ProxyProtocolWantRead,
                           data: bytearray) -> bytes:
        if want_read.want_bytes is not None:
            try:
                return await reader.readexactly(want_read.want_bytes)
            except asyncio.IncompleteReadError as exc:
                raise ProxyProtocolEOFError(bytes(data) + exc.partial) \
                    from None
        elif want_read.want_line:
            line = await reader.readline()
            if not line.endswith(b'\n'):
                # readline() returns what is left, or b'', at end of stream.
                raise ProxyProtocolEOFError(bytes(data) + line)
            return line
        raise ValueError('No conditions given to complete parsing')

    async def read(self, reader: StreamReaderProtocol) -> ProxyResult:
        """Read one complete header from ``reader`` and return its result.

        Only the header's bytes are read; the rest stays in ``reader``.
        There is no timeout here: wrap it in one (as :meth:`get_callback`
        does).

        Raises:
            ProxyProtocolEOFError: The stream ended before the header did
                (also an :class:`asyncio.IncompleteReadError`).
            ProxyProtocolError: The header is invalid (a ``ValueError``).

        """
        data = bytearray()
        while True:
            try:
                with memoryview(data) as view:
                    return self.pp.unpack(view)
            except ProxyProtocolIncompleteError as exc:
                want_read = exc.want_read
            data += await self._handle_want(reader, want_read, data)

    def get_callback(self, callback: _WrappedCallback,
                     timeout: Union[None, int, float] = 3) -> _Callback:
        """A ``client_connected_cb`` for :func:`asyncio.start_server`.

        For each connection it reads the header within ``timeout`` seconds
        and then starts ``callback(reader, writer, sock_info)`` as a task.
        If the header cannot be read (invalid, incomplete, too slow), the
        connection is closed and ``callback`` is not called.

        Args:
            callback: The application's coroutine function.
            timeout: Seconds allowed for the header; None means
                :data:`~proxyprotocol.policy.DEFAULT_TIMEOUT`.

        """
        return partial(self._read_then_call, callback, timeout)

    async def _read_then_call(self, callback: _WrappedCallback,
                              timeout: Union[None, int, float],
                              reader: StreamReader,
                              writer: StreamWriter) -> None:
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        try:
            result = await asyncio.wait_for(self.read(reader), timeout)
        except Exception as exc:
            _log.debug('dropping connection from %r: %r',
                       writer.get_extra_info('peername'), exc)
            writer.close()
            return
        sock_info = SocketInfo.get(writer, result, unique_id=uuid4().bytes)
        task = asyncio.create_task(callback(reader, writer, sock_info))
        self._tasks.add(task)
        task.add_done_callback(partial(self._callback_done, writer))

    def _callback_done(self, writer: StreamWriter,
                       task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            task.get_loop().call_exception_handler({
                'message': 'Unhandled exception in PROXY protocol callback',
                'exception': exc,
                'task': task,
            })
            writer.close()
