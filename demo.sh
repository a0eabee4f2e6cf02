#!/usr/bin/env bash
# The quick-start demo: a client talks to proxyprotocol-server, which sends a
# PROXY v2 header (with CRC32C and UNIQUE_ID TLVs) to proxyprotocol-echo; the
# echo server logs the ORIGINAL client, not the proxy.
#
#     bash demo.sh
#
# From the repository root, on a Debian-like machine with python3 and
# python3-venv. Uses .venv (created if missing), installs this package into
# it, runs both servers on 127.0.0.1 with ephemeral ports, stops them by PID
# and exits 0 when everything worked.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)

if [[ ! -x .venv/bin/python ]]; then
    echo "creating .venv"
    python3 -m venv .venv
fi
PY=$ROOT/.venv/bin/python
# Install unless .venv already runs this checkout.
if ! "$PY" - "$ROOT" >/dev/null 2>&1 <<'EOF'
import os, sys
import proxyprotocol.server.echo as module
sys.exit(not os.path.realpath(module.__file__).startswith(
    os.path.realpath(sys.argv[1]) + os.sep))
EOF
then
    echo "installing proxy-protocol into .venv"
    "$PY" -m pip install --quiet --disable-pip-version-check -e .
fi

TMP=$(mktemp -d)
ECHO_PID=
SERVER_PID=
cleanup() {
    for pid in $SERVER_PID $ECHO_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# wait_for FILE PATTERN: until a line of FILE matches (10 s at most)
wait_for() {
    for _ in $(seq 100); do
        if grep -q -- "$2" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}

# port_of FILE: the port of the first "listening on 127.0.0.1:PORT" line
port_of() {
    sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1
}

"$ROOT/.venv/bin/proxyprotocol-echo" 127.0.0.1:0 2>"$TMP/echo.log" &
ECHO_PID=$!
wait_for "$TMP/echo.log" ' ready ('
ECHO_PORT=$(port_of "$TMP/echo.log")
echo "proxyprotocol-echo    listening on 127.0.0.1:$ECHO_PORT (pid $ECHO_PID)"

"$ROOT/.venv/bin/proxyprotocol-server" \
    --service 127.0.0.1:0 "127.0.0.1:$ECHO_PORT?pp=v2&tlv=crc32c,unique-id" \
    2>"$TMP/server.log" &
SERVER_PID=$!
wait_for "$TMP/server.log" ' ready ('
SERVER_PORT=$(port_of "$TMP/server.log")
echo "proxyprotocol-server  listening on 127.0.0.1:$SERVER_PORT -> 127.0.0.1:$ECHO_PORT," \
    "PROXY v2 + CRC32C, UNIQUE_ID (pid $SERVER_PID)"
echo

"$PY" - "$SERVER_PORT" <<'EOF'
import socket
import sys

message = b'Hello through the PROXY protocol!\n'
with socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10) as sock:
    host, port = sock.getsockname()[:2]
    sock.sendall(message)
    sock.shutdown(socket.SHUT_WR)
    echoed = b''
    while True:
        data = sock.recv(4096)
        if not data:
            break
        echoed += data
print(f'client {host}:{port} sent     {message!r}')
print(f'client {host}:{port} received {echoed!r}')
sys.exit(0 if echoed == message else 1)
EOF

wait_for "$TMP/echo.log" 'connection from'
echo
echo "the echo server's log line for it (the ORIGINAL client, not the proxy):"
grep -m 1 'connection from' "$TMP/echo.log"

kill "$SERVER_PID" "$ECHO_PID"
wait "$SERVER_PID" "$ECHO_PID"
SERVER_PID=
ECHO_PID=
echo
echo "both servers stopped"
