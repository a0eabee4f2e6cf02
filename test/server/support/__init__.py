"""Shared helpers for the integration tests in ``test/server``.

One implementation of each concept: :mod:`.net` (loopback sockets and
clients), :mod:`.loops` (bounded event-loop runs, uvloop), :mod:`.procs`
(subprocesses stopped by PID), :mod:`.certs` (``trustme`` certificates),
:mod:`.haproxy` and :mod:`.nginx` (the real peers).

"""
