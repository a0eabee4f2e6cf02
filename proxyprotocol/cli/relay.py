"""Moving bytes for ``send`` and ``listen``: stream to stream, and
stdin/stdout to a stream, each direction closed on its own (half-close)."""

from __future__ import annotations

import asyncio
import os
import threading
from contextlib import suppress
from typing import BinaryIO, Callable, Optional

__all__ = ['pipe', 'relay_stdio', 'close_writer']

#: How much is read at once.
CHUNK_SIZE = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               *, on_data: Optional[Callable[[bytes], None]] = None) -> int:
    """Copy ``reader`` to ``writer`` until EOF, then half-close ``writer``
    where the transport can (TLS cannot). Returns the bytes copied."""
    total = 0
    while True:
        data = await reader.read(CHUNK_SIZE)
        if not data:
            break
        total += len(data)
        if on_data is not None:
            on_data(data)
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        with suppress(OSError):
            writer.write_eof()
    return total


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream, ignoring a peer that is already gone."""
    writer.close()
    with suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


def _read_stdin(loop: asyncio.AbstractEventLoop,
                queue: asyncio.Queue[bytes], fd: int) -> None:
    # Runs in a daemon thread: a read from stdin cannot be cancelled, and
    # the command must be able to exit while one is pending. os.read holds
    # no interpreter lock that shutdown would wait for.
    while True:
        try:
            data = os.read(fd, CHUNK_SIZE)
        except OSError:
            data = b''
        try:
            asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
        except Exception:
            return
        if not data:
            return


async def relay_stdio(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, *, stdin_fd: int,
                      stdout: BinaryIO) -> int:
    """Relay ``stdin_fd`` to ``writer`` and ``reader`` to ``stdout``, like
    ``nc``: EOF on stdin half-closes the connection, and the relay ends when
    the server closes its side. Returns the bytes received."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
    threading.Thread(target=_read_stdin, args=(loop, queue, stdin_fd),
                     name='proxyprotocol-stdin', daemon=True).start()

    async def upload() -> None:
        while True:
            data = await queue.get()
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    uploading = asyncio.create_task(upload())
    received = 0
    try:
        while True:
            data = await reader.read(CHUNK_SIZE)
            if not data:
                break
            received += len(data)
            stdout.write(data)
            stdout.flush()
    finally:
        uploading.cancel()
        with suppress(asyncio.CancelledError, OSError):
            await uploading
    return received
