"""Subprocesses for the tests: started here, waited for within bounds,
and stopped by their PID (never by name).

* :func:`stop_process` stops one ``Popen``: a signal, then KILL.
* :func:`pump_lines` reads a pipe line by line in a daemon thread.
* :class:`LoggedProcess` is a process whose output goes to a log file.
* :class:`ServerProcess` runs ``proxyprotocol-server`` or
  ``proxyprotocol-echo`` and reads the addresses it listens on from its log.
* :class:`Proc` is a server whose output lines are collected from a pipe.

"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Optional, Sequence, Union

from support.net import WAIT, SockAddress, connect, split_address


def stop_process(popen: subprocess.Popen[Any],
                 sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
    """Stop a process this test started, by its PID: ``sig``, then KILL
    after ``timeout`` seconds; returns its exit status."""
    if popen.poll() is None:
        popen.send_signal(sig)
    try:
        return popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        return popen.wait(timeout)


def pump_lines(stream: IO[bytes]) -> queue.Queue[Optional[bytes]]:
    """The lines of ``stream`` as they come, read by a daemon thread;
    ``None`` marks the end."""
    lines: queue.Queue[Optional[bytes]] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    return lines


class LoggedProcess:
    """A process whose output goes to ``log_path``."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the process logged so far."""
        return self.log_path.read_text(errors='replace')

    def stop(self) -> None:
        """Stop by PID: TERM, then KILL after :data:`WAIT`."""
        stop_process(self.popen)


def wait_connectable(address: SockAddress,
                     peer: Optional[LoggedProcess] = None,
                     timeout: float = WAIT) -> None:
    """Wait until something accepts connections at ``address``; fail as
    soon as ``peer`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(address, timeout=2).close()
            return
        except OSError:
            if peer is not None and peer.popen.poll() is not None:
                raise AssertionError(f'the peer exited:\n{peer.log()}')
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_LISTENING = re.compile(r'listening on (\S+)')


class ServerProcess(LoggedProcess):
    """``python -m MODULE ARGS`` with its log in ``tmp_path``; waits for
    ``ready`` readiness lines unless ``expect_ready`` is false."""

    def __init__(self, tmp_path: Path, module: str, *args: str,
                 ready: int = 1, env: Optional[dict[str, str]] = None,
                 expect_ready: bool = True) -> None:
        self.log_path = tmp_path / f'{module.rpartition(".")[2]}-' \
            f'{time.monotonic_ns()}.log'
        self.args = [sys.executable, '-m', module, *args]
        with open(self.log_path, 'wb') as log:
            self.popen = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **(env or {})})
        if expect_ready:
            self.wait_log(r' ready \(', count=ready)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_log(self, pattern: str, *, count: int = 1,
                 timeout: float = WAIT) -> list[str]:
        """Wait until ``pattern`` matches ``count`` log lines; returns
        them. Fails the test if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log().splitlines()
                     if regex.search(line)]
            if len(lines) >= count:
                return lines
            if self.popen.poll() is not None:
                raise AssertionError(
                    f'{self.args} exited ({self.popen.returncode}) before '
                    f'logging {pattern!r}:\n{self.log()}')
            if time.monotonic() > deadline:
                raise AssertionError(f'no {pattern!r} in the log within '
                                     f'{timeout} s:\n{self.log()}')
            time.sleep(0.02)

    @property
    def addresses(self) -> list[str]:
        """The addresses from the ``listening on`` lines."""
        return [m.group(1) for m in _LISTENING.finditer(self.log())]

    def address(self, index: int = 0) -> Union[tuple[str, int], str]:
        """A listening address as ``connect`` takes it."""
        return split_address(self.addresses[index])

    @property
    def port(self) -> int:
        address = self.address()
        assert isinstance(address, tuple)
        return address[1]

    def stop(self, sig: int = signal.SIGTERM,  # type: ignore[override]
             timeout: float = WAIT) -> int:
        """Send ``sig`` and wait for the exit status; a process that needs
        KILL fails the test."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(WAIT)
            raise AssertionError(f'{self.args} did not stop on {sig}:\n'
                                 f'{self.log()}')


class Proc:
    """A server subprocess whose output lines (stdout and stderr) are
    collected in the background.

    Args:
        args: The command.
        env: Extra environment variables (``PROXYPROTOCOL_*`` variables of
            the test run are not passed on).
        cwd: The working directory.
        wait: The default bound on waits and on stopping, in seconds.

    """

    def __init__(self, args: Sequence[str], *,
                 env: Optional[dict[str, str]] = None,
                 cwd: Optional[Path] = None, wait: float = WAIT) -> None:
        full_env = dict(os.environ)
        for name in list(full_env):
            if name.startswith('PROXYPROTOCOL_'):
                del full_env[name]
        full_env['PYTHONUNBUFFERED'] = '1'
        full_env.update(env or {})
        self.wait = wait
        self.popen = subprocess.Popen(
            list(args), env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output: list[str] = []
        assert self.popen.stdout is not None
        self.lines = pump_lines(self.popen.stdout)

    def wait_for(self, pattern: str,
                 timeout: Optional[float] = None) -> re.Match[str]:
        """The first output line matching ``pattern``; fail after
        ``timeout`` seconds or when the process ends."""
        timeout = self.wait if timeout is None else timeout
        regex = re.compile(pattern)
        for _ in range(10000):
            try:
                raw = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f'no line matching {pattern!r} within {timeout} s:\n'
                    + ''.join(self.output)) from None
            if raw is None:
                raise AssertionError(
                    f'the process ended ({self.popen.wait(self.wait)}) '
                    f'before a line matching {pattern!r}:\n'
                    + ''.join(self.output))
            line = raw.decode(errors='replace')
            self.output.append(line)
            match = regex.search(line)
            if match is not None:
                return match
        raise AssertionError('too much output')  # pragma: no cover

    def text(self) -> str:
        """Everything printed so far (lines already waited for, and the
        rest if the process has ended)."""
        for _ in range(100000):
            try:
                raw = self.lines.get_nowait()
            except queue.Empty:
                break
            if raw is None:
                break
            self.output.append(raw.decode(errors='replace'))
        return ''.join(self.output)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its PID (with ``sig`` first)."""
        stop_process(self.popen, sig, self.wait)
