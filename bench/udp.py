"""UDP through proxyprotocol-server's UDP engine versus sending directly.

Run from the repository root (about 35 s; ``--quick`` for a smoke test)::

    python bench/udp.py [--host ::1] [--rounds N] [--duration S]

Three processes on loopback, each started by this script (``--role``):

* **client**, the load generator: an ``epoll`` loop over 16 connected
  sockets (no asyncio), each with up to 128 datagrams of 512 bytes
  unacknowledged; it sends in bursts as acknowledgements free the window
  (closed loop: nobody is flooded, and the rate is what the path
  sustains). A socket that hears nothing for 0.1 s writes its window off
  as lost (counted) and starts again.
* **sink**: one UDP socket; it skips a PROXY v2 header when a datagram
  starts with one (reading the length field), counts datagrams per sender
  and acknowledges every 32nd with the count. When its queue runs dry
  under load it sleeps 0.2 ms so that datagrams gather, rather than being
  woken by each one (a wake-up costs the sender a few microseconds, much
  more in a VM). The same code serves both paths.
* **proxy**: ``proxyprotocol-server --service udp://HOST:0
  udp://HOST:SINK`` (on uvloop when installed); with ``--engine``, its
  engine :func:`proxyprotocol.server.udp.serve_udp` alone in a process,
  which also prints the proxy's counters at the end.

Throughput: datagrams delivered to the sink per second over the measured
interval (after a warm-up), direct to the sink and through the proxy; the
rounds alternate the two paths and the best of each is kept (the machine
is shared: other loads only ever slow a round down). Acknowledgements ride
back through the proxy too (one per 32 datagrams). The CPU time each
process used per datagram is printed for every round.

Latency: one socket, one datagram at a time (ping-pong, echoed by the
sink); the median and 99th percentile round trip on each path, and the
difference: what two passes through the proxy add. During these runs the
client, the sink and the proxy are pinned to one CPU, so that each hop is
a hand-over between processes rather than the wake-up of an idle CPU,
which is slow and erratic in a VM; the figures are then processing
latency, stable from run to run.

Target: through the proxy at least 0.5x the direct rate. The exit status
is 0 whether or not the target is met (1 if a run failed).

"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Union

V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'
TARGET = 0.5
GATHER = 0.0002  # seconds the sink lets datagrams gather under load
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.abspath(__file__)


# ---------------------------------------------------------------- roles

def run_sink(host: str, every: int) -> None:
    """Skip a v2 header; echo payloads starting with ``E``, count the rest
    per sender and acknowledge every ``every``-th with the count."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 1 << 22)
    sock.bind((host, 0))
    recvfrom, sendto = sock.recvfrom, sock.sendto
    unpack = struct.Struct('!H').unpack_from
    pack = struct.Struct('!Q').pack
    counts: dict[Any, int] = {}
    first: list[str] = []
    total = 0

    def stop(*_: Any) -> None:
        print(json.dumps({'received': total, 'first_header': first[:1]}),
              flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({'port': sock.getsockname()[1]}), flush=True)
    sock.setblocking(False)
    wait = select.epoll()
    wait.register(sock.fileno(), select.EPOLLIN)
    kind = b''
    while True:
        try:
            data, addr = recvfrom(65536)
        except BlockingIOError:
            if kind == b'A':
                # Under load: let datagrams gather for a moment rather than
                # be woken by each (a wake-up costs the sender, and in a VM
                # an inter-processor interrupt, per datagram).
                time.sleep(GATHER)
            else:
                wait.poll()
            kind = b''
            continue
        total += 1
        start = 0
        if data[:12] == V2_SIGNATURE:
            start = 16 + unpack(data, 14)[0]
            if not first:
                first.append(data[:start].hex())
        kind = data[start:start + 1]
        if kind == b'E':
            sendto(data[start:], addr)
            continue
        if kind == b'R':  # a new run on this address: count from zero
            counts[addr] = 0
            sendto(b'R', addr)
            continue
        count = counts.get(addr, 0) + 1
        counts[addr] = count
        if count % every == 0:
            try:
                sendto(pack(count), addr)
            except BlockingIOError:
                pass


def run_proxy(host: str, upstream_port: int, version: Optional[int]) -> None:
    """The UDP engine of proxyprotocol-server, until SIGTERM."""
    import asyncio

    from proxyprotocol.server.udp import serve_udp

    try:
        import uvloop as fast_loop
    except ImportError:
        fast_loop = None  # type: ignore[assignment]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, done.set_result, None)
        service = await serve_udp((host, 0), (host, upstream_port),
                                  version=version, max_flows=4096)
        print(json.dumps({'port': service.addresses[0][1],
                          'loop': type(loop).__module__}), flush=True)
        await done
        print(json.dumps(service.stats.as_dict()), flush=True)
        service.close()

    if fast_loop is not None:
        fast_loop.install()
    asyncio.run(main())


def _client_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    socks = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, 0))
        sock.connect((host, port))
        socks.append(sock)
    return socks


def reset(socks: list[socket.socket]) -> None:
    """Have the sink count from zero for each socket (its address may
    have been used by an earlier run)."""
    waiting = {sock.fileno(): sock for sock in socks}
    deadline = time.monotonic() + 10
    while waiting:
        if time.monotonic() > deadline:
            raise SystemExit('the sink does not answer')
        for sock in waiting.values():
            sock.send(b'R')
        ready, _, _ = select.select(list(waiting.values()), [], [], 0.2)
        for sock in ready:
            try:
                while sock.recv(64) != b'R':
                    pass
            except (BlockingIOError, ConnectionRefusedError):
                continue
            del waiting[sock.fileno()]


def run_throughput(host: str, port: int, sockets: int, window: int,
                   size: int, warmup: float, duration: float) -> None:
    """Send as fast as the sink's acknowledgements allow over many sockets,
    at most ``window`` datagrams unacknowledged on each; prints one JSON
    line: datagrams delivered to the sink per second."""
    socks = _client_sockets(host, port, sockets)
    payload = b'A' * size
    unpack = struct.Struct('!Q').unpack
    epoll = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    sent: dict[int, int] = {}       # datagrams sent on the socket
    acked: dict[int, int] = {}      # the sink's latest count for it
    written_off: dict[int, int] = {}  # taken as lost after a stall
    heard: dict[int, float] = {}
    now = time.perf_counter()
    for sock in socks:
        sock.setblocking(False)
        fd = sock.fileno()
        by_fd[fd] = sock
        epoll.register(fd, select.EPOLLIN)
        heard[fd] = now
        sent[fd] = acked[fd] = written_off[fd] = 0

    def fill(fd: int, sock: socket.socket) -> None:
        room = window - (sent[fd] - acked[fd] - written_off[fd])
        send = sock.send
        done = 0
        for _ in range(room):
            try:
                send(payload)
            except (BlockingIOError, ConnectionRefusedError):
                break
            done += 1
        sent[fd] += done

    reset(socks)
    now = time.perf_counter()
    for fd, sock in by_fd.items():
        heard[fd] = now
        fill(fd, sock)
    start = now + warmup
    end = start + duration
    delivered = 0
    at_start: Optional[int] = None
    next_check = now + 0.05
    poll = epoll.poll
    while True:
        events = poll(0.05)
        now = time.perf_counter()
        if at_start is None and now >= start:
            at_start = delivered
        if now >= end:
            break
        for fd, _ in events:
            sock = by_fd[fd]
            recv = sock.recv
            latest = acked[fd]
            while True:
                try:
                    latest = unpack(recv(64))[0]
                except BlockingIOError:
                    break
                except (ConnectionRefusedError, struct.error):
                    continue
            if latest > acked[fd]:
                delivered += latest - acked[fd]
                acked[fd] = latest
                heard[fd] = now
                if sent[fd] - acked[fd] - written_off[fd] < 0:
                    written_off[fd] = sent[fd] - acked[fd]
            fill(fd, sock)
        if now >= next_check:
            next_check = now + 0.05
            for fd, sock in by_fd.items():
                if now - heard[fd] > 0.1:
                    # Stalled: what is in flight is taken as lost.
                    written_off[fd] = sent[fd] - acked[fd]
                    heard[fd] = now
                    fill(fd, sock)
    counted = delivered - (at_start or 0)
    print(json.dumps({
        'delivered': counted, 'seconds': duration,
        'rate': counted / duration if at_start is not None else 0.0,
        'lost': sum(written_off.values()), 'all': delivered,
        'cpu': time.process_time()}), flush=True)


def run_latency(host: str, port: int, size: int, count: int,
                cpu: int) -> None:
    """Ping-pong round trips on one socket; prints one JSON line."""
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    sock = _client_sockets(host, port, 1)[0]
    sock.settimeout(1.0)
    payload = b'E' * size
    clock = time.perf_counter_ns
    samples: list[int] = []
    lost = 0
    for i in range(count + count // 10):
        t0 = clock()
        sock.send(payload)
        try:
            sock.recv(4096)
        except (socket.timeout, ConnectionRefusedError):
            lost += 1
            continue
        if i >= count // 10:  # the first tenth warms up
            samples.append(clock() - t0)
    samples.sort()
    print(json.dumps({
        'median_us': statistics.median(samples) / 1e3 if samples else None,
        'p99_us': samples[int(len(samples) * 0.99) - 1] / 1e3
        if samples else None,
        'lost': lost}), flush=True)


# ---------------------------------------------------------------- driver

class Child:
    """A role of this script in its own process."""

    def __init__(self, *args: str) -> None:
        self.role = args[1] if len(args) > 1 else '?'
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
                   + os.environ.get('PYTHONPATH', ''))
        self.proc = subprocess.Popen(
            [sys.executable, HERE, *args], stdout=subprocess.PIPE,
            text=True, env=env, cwd=ROOT)

    def line(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON line the child prints."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        text = self.proc.stdout.readline() if ready else ''
        if not text:
            self.stop()
            raise RuntimeError(f'the {self.role} process did not answer')
        result: dict[str, Any] = json.loads(text)
        return result

    def wait(self, timeout: float) -> dict[str, Any]:
        """The child's result line, once it is done."""
        result = self.line(timeout)
        self.proc.wait(5)
        return result

    def stop(self) -> Optional[dict[str, Any]]:
        """SIGTERM, and the last line it prints (its counters)."""
        if self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        lines = [x for x in out.splitlines() if x.startswith('{')]
        return json.loads(lines[-1]) if lines else None


class ServerProcess:
    """``proxyprotocol-server`` itself, with one UDP service in front of the
    sink (``python -m proxyprotocol.server.main``, as the console script
    runs it; the event loop is its default, uvloop when installed)."""

    role = 'proxyprotocol-server'

    def __init__(self, host: str, sink_port: int) -> None:
        name = f'[{host}]' if ':' in host else host
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
                   + os.environ.get('PYTHONPATH', ''))
        self.log = tempfile.TemporaryFile('w+')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'proxyprotocol.server.main', '--service',
             f'udp://{name}:0', f'udp://{name}:{sink_port}'],
            stdout=subprocess.DEVNULL, stderr=self.log, text=True, env=env,
            cwd=ROOT)

    def port(self, timeout: float = 30.0) -> int:
        """The port it listens on, from its start-up log."""
        pattern = re.compile(r'UDP service on (?:\[[^]]+\]|[^:\s]+):(\d+) ')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.log.seek(0)
            found = pattern.search(self.log.read())
            if found:
                return int(found.group(1))
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError('proxyprotocol-server did not start: '
                           + self.log.read()[-2000:])

    def stop(self) -> Optional[dict[str, Any]]:
        """SIGTERM, and wait for it to end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return None


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    with open(f'/proc/{pid}/stat') as stat:
        fields = stat.read().rpartition(')')[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def measure(host: str, port: int, args: argparse.Namespace,
            watch: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One throughput run and one latency run against ``port``; the
    throughput result also has the CPU seconds the processes in ``watch``
    used during it."""
    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    through = Child('--role', 'throughput', '--host', host, '--port',
                    str(port), '--sockets', str(args.sockets), '--window',
                    str(args.window), '--size', str(args.size), '--warmup',
                    str(args.warmup), '--duration', str(args.duration))
    result = through.wait(args.warmup + args.duration + 30)
    result['cpu'] = {'client': result['cpu'], **{
        name: cpu_seconds(pid) - before[name] for name, pid in watch.items()}}
    # Round trips with every process on one CPU: a datagram then hands
    # over from process to process on that CPU, instead of waking an idle
    # CPU each time (which, in a VM, costs tens of microseconds at random).
    everywhere = os.sched_getaffinity(0)
    one = {min(everywhere)}
    for pid in watch.values():
        os.sched_setaffinity(pid, one)
    try:
        latency = Child('--role', 'latency', '--host', host, '--port',
                        str(port), '--size', str(args.size), '--count',
                        str(args.pings), '--cpu', str(min(one)))
        pings = latency.wait(60)
    finally:
        for pid in watch.values():
            os.sched_setaffinity(pid, everywhere)
    return result, pings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--role', default='driver', choices=(
        'driver', 'sink', 'proxy', 'throughput', 'latency'))
    parser.add_argument('--host', default='127.0.0.1',
                        help='loopback address to use (127.0.0.1 or ::1)')
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--upstream-port', type=int, default=0)
    parser.add_argument('--no-header', action='store_true',
                        help='proxy role: forward without a header')
    parser.add_argument('--sockets', type=int, default=16)
    parser.add_argument('--window', type=int, default=128,
                        help='unacknowledged datagrams per client socket')
    parser.add_argument('--ack-every', type=int, default=32,
                        help='the sink acknowledges every N-th datagram')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--warmup', type=float, default=0.5)
    parser.add_argument('--duration', type=float, default=2.0)
    parser.add_argument('--rounds', type=int, default=4)
    parser.add_argument('--pings', type=int, default=5000)
    parser.add_argument('--count', type=int, default=5000)
    parser.add_argument('--cpu', type=int, default=-1)
    parser.add_argument('--engine', action='store_true',
                        help='run serve_udp() in a bare process instead of '
                        'proxyprotocol-server (prints its counters)')
    parser.add_argument('--quick', action='store_true',
                        help='one short round: a smoke test')
    args = parser.parse_args()
    if args.host not in ('127.0.0.1', '::1'):
        parser.error('--host must be a loopback address')
    if args.role == 'sink':
        run_sink(args.host, args.ack_every)
    elif args.role == 'proxy':
        run_proxy(args.host, args.upstream_port,
                  None if args.no_header else 2)
    elif args.role == 'throughput':
        run_throughput(args.host, args.port, args.sockets, args.window,
                       args.size, args.warmup, args.duration)
    elif args.role == 'latency':
        run_latency(args.host, args.port, args.size, args.count, args.cpu)
    else:
        return drive(args)
    return 0


def drive(args: argparse.Namespace) -> int:
    if args.quick:
        args.rounds, args.duration, args.warmup, args.pings = 1, 0.5, 0.2, 500
    host = args.host
    try:
        import uvloop
        loop_name = f'uvloop {getattr(uvloop, "__version__", "")}'
    except ImportError:
        loop_name = 'asyncio (uvloop not installed)'
    print(f'UDP, {args.size}-byte datagrams over {host}; '
          f'{args.sockets} client sockets x {args.window} in flight, '
          f'acknowledged every {args.ack_every}; '
          f'{args.rounds} round(s) of {args.duration:g} s; proxy: '
          f'{"serve_udp()" if args.engine else "proxyprotocol-server"} on '
          f'{loop_name}; {os.cpu_count()} CPUs')
    sink = Child('--role', 'sink', '--host', host, '--ack-every',
                 str(args.ack_every))
    proxy: Optional[Union[Child, ServerProcess]] = None
    failed = False
    try:
        sink_port = sink.line()['port']
        if args.engine:
            engine = Child('--role', 'proxy', '--host', host,
                           '--upstream-port', str(sink_port))
            proxy, proxy_port = engine, engine.line()['port']
        else:
            server = ServerProcess(host, sink_port)
            proxy, proxy_port = server, server.port()
        rates: dict[str, list[float]] = {'direct': [], 'proxy': []}
        latency: dict[str, list[dict[str, Any]]] = {'direct': [],
                                                    'proxy': []}
        lost = {'direct': 0, 'proxy': 0}
        # CPU seconds per datagram of each process, per path, every round.
        costs: dict[str, list[dict[str, float]]] = {'direct': [],
                                                    'proxy': []}
        order = ['direct', 'proxy']
        for round_no in range(args.rounds):
            for name in order if round_no % 2 == 0 else order[::-1]:
                port = sink_port if name == 'direct' else proxy_port
                watch = {'sink': sink.proc.pid}
                if name == 'proxy':
                    watch['proxy'] = proxy.proc.pid
                result, pings = measure(host, port, args, watch)
                rates[name].append(result['rate'])
                latency[name].append(pings)
                lost[name] += result['lost'] + pings['lost']
                print(f'  round {round_no + 1} {name:6s} '
                      f'{result["rate"]:>10,.0f} datagrams/s   '
                      f'RTT median {pings["median_us"]:7.1f} us   '
                      f'p99 {pings["p99_us"]:7.1f} us   '
                      f'lost {result["lost"] + pings["lost"]}')
                count = max(result['all'], 1)
                cost = {who: seconds / count
                        for who, seconds in result['cpu'].items()}
                costs[name].append(cost)
                print('        CPU us per datagram: ' + ', '.join(
                    f'{who} {seconds * 1e6:.2f}'
                    for who, seconds in cost.items()))
        proxy_stats = proxy.stop()
        proxy = None
        sink_stats = sink.stop()
    except Exception as exc:  # report, do not hide, a broken run
        print(f'ERROR: {exc!r}')
        failed = True
    finally:
        if proxy is not None:
            proxy.stop()
        sink.stop()
    if failed:
        return 1
    best = {name: max(values) for name, values in rates.items()}
    rtt = {name: min(x['median_us'] for x in values)
           for name, values in latency.items()}
    p99 = {name: min(x['p99_us'] for x in values)
           for name, values in latency.items()}
    ratio = best['proxy'] / best['direct'] if best['direct'] else 0.0
    print()
    print(f'{"path":8s} {"datagrams/s":>12s} {"RTT median":>11s} '
          f'{"RTT p99":>9s}')
    for name in ('direct', 'proxy'):
        print(f'{name:8s} {best[name]:>12,.0f} {rtt[name]:>8.1f} us '
              f'{p99[name]:>6.1f} us')
    print()
    print(f'added latency per round trip (two passes through the proxy): '
          f'median {rtt["proxy"] - rtt["direct"]:+.1f} us, '
          f'p99 {p99["proxy"] - p99["direct"]:+.1f} us')
    print(f'datagrams lost: direct {lost["direct"]}, proxy {lost["proxy"]}')
    # What each path would sustain if every process had a CPU of its own:
    # the busiest process per datagram sets the pace (lowest cost seen per
    # process, as other loads only ever add to it).
    own_cpu = {}
    for name, runs in costs.items():
        lowest = {who: min(run[who] for run in runs) for who in runs[0]}
        own_cpu[name] = 1 / max(max(lowest.values()), 1e-9)
        print(f'{name:6s}: CPU us per datagram (lowest) ' + ', '.join(
            f'{who} {cost * 1e6:.2f}' for who, cost in lowest.items())
            + f'; with a CPU per process: {own_cpu[name]:,.0f} datagrams/s')
    print(f'with a CPU per process, proxied / direct would be '
          f'{own_cpu["proxy"] / own_cpu["direct"]:.2f}x '
          f'({os.cpu_count()} CPUs here, shared with other loads)')
    if proxy_stats is not None:
        print(f'proxy counters: {proxy_stats}')
    if sink_stats is not None and sink_stats.get('first_header'):
        print(f'first header the sink saw: {sink_stats["first_header"][0]}')
    verdict = 'PASS' if ratio >= TARGET else 'FAIL'
    print(f'proxied / direct throughput: {ratio:.2f}x '
          f'(target >= {TARGET}x): {verdict}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
