"""Fixtures shared by the integration tests in ``test/server``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from peers import echo_process
from support.haproxy import HAProxyV2
from support.procs import ServerProcess


@pytest.fixture
def start_haproxy(tmp_path: Path) -> Iterator[Callable[..., HAProxyV2]]:
    """Start :class:`~support.haproxy.HAProxyV2` instances (same arguments
    less ``tmp_path``); all are stopped by PID at the end of the test."""
    started: list[HAProxyV2] = []

    def start(server: str, **kwargs: Any) -> HAProxyV2:
        haproxy = HAProxyV2(tmp_path, server, **kwargs)
        started.append(haproxy)
        return haproxy
    yield start
    for haproxy in started:
        haproxy.stop()


@pytest.fixture
def echo_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """``proxyprotocol-echo`` on 127.0.0.1 and a UNIX socket; it must exit
    cleanly at the end of the test."""
    server = echo_process(tmp_path, '127.0.0.1:0', f'unix:{tmp_path}/e.sock')
    try:
        yield server
    finally:
        assert server.stop() == 0
