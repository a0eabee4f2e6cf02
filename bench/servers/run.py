"""Benchmark: proxyprotocol-server against HAProxy and against no proxy at all.

Run from the repository root, with this project installed in the current
interpreter (``pip install -e .``, and ``uvloop`` for the fast loop), and
HAProxy on the PATH::

    python bench/servers/run.py [--quick] [--json FILE]

In one run, on 127.0.0.1, with the load generator (``loadgen.py``) and the
sink (``sink.py``) as separate processes, it measures:

1. **short connections**: connect, 100 bytes each way, close; 32 at once,
   for ``--duration`` seconds per measurement, ``--rounds`` rounds, the
   subjects interleaved in each round: *direct* (client to sink), *haproxy*
   (``nbthread 1``, ``send-proxy-v2``), *ours* (``proxyprotocol-server``
   sending the same v2 header, no TLVs), *ours +tlv* (with its default
   CRC32C and UNIQUE_ID TLVs) and *ours x2* (``--workers 2``). The rate is
   the load generator's count of completed connections per second; the CPU
   time per connection is the utime+stime delta of the proxy's processes
   (``/proc/PID/stat``) over the measurement, divided by that count.
2. **bulk**: one connection carrying ``--bulk-size`` bytes (``sendfile`` on
   the client, ``splice`` to ``/dev/null`` in the sink, so neither copies
   through user space); throughput from the first byte until the sink has
   closed. Direct, haproxy, ours, and as a reference *splice loop*
   (``splice_relay.py``: a blocking splice loop with no event loop, the
   most any user-space relay can reach here). Best of the rounds.
3. **idle**: ``--idle-count`` connections opened through the proxy, 4 bytes
   echoed on each, then held: (RSS with them - RSS before) / count.
4. **slow reader**: a ``--slow-size`` upload through ours to a sink that
   reads at ``--slow-rate`` bytes/s; the proxy's peak RSS (``VmHWM``) must
   stay bounded (backpressure).

The medians over rounds are reported with the ratios to HAProxy measured in
the same run, and each target as PASS or FAIL. Exit status 0 (a report),
1 if a measurement could not be made; with ``--check``, 1 also when a
target fails.

"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
SINK = HERE / 'sink.py'
LOADGEN = HERE / 'loadgen.py'
CLK_TCK = os.sysconf('SC_CLK_TCK')
PAGE = os.sysconf('SC_PAGE_SIZE')

TARGETS = {
    'short_rate': 0.75,        # >= 0.75x HAProxy's rate
    'short_cpu': 1.5,          # <= 1.5x HAProxy's CPU time per connection
    'bulk': 0.8,               # >= 0.8x direct throughput
    'idle_kib': 16.0,          # <= 16 KiB per idle connection
    'slow_mib': 64.0,          # < 64 MiB RSS during the slow upload
}


# -- processes ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
        return port


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as file:
                fields = file.read().rpartition(')')[2].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    result, todo = [], [pid]
    while todo:
        current = todo.pop()
        result.append(current)
        todo.extend(parents.get(current, []))
    return result


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids``, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as file:
                fields = file.read().rpartition(')')[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def status_kib(pid: int, name: str) -> int:
    with open(f'/proc/{pid}/status') as file:
        for line in file:
            if line.startswith(name + ':'):
                return int(line.split()[1])
    raise KeyError(name)


def rss_kib(pids: list[int]) -> int:
    return sum(status_kib(pid, 'VmRSS') for pid in pids)


def stop(proc: Optional[subprocess.Popen[Any]], sig: int = signal.SIGTERM,
         timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Sink:
    """``sink.py MODE`` as a subprocess."""

    def __init__(self, mode: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK), mode, *extra], stdout=subprocess.PIPE,
            text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith('READY '):
            stop(self.proc)
            raise RuntimeError(f'the sink did not start: {line!r}')
        self.port = int(line.split()[1])

    def close(self) -> dict[str, Any]:
        stop(self.proc)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read().strip().splitlines()
        self.proc.stdout.close()
        return json.loads(out[-1]) if out else {}


@dataclass
class Subject:
    """Something between the client and the sink (or nothing)."""

    name: str
    start: Callable[[int, int, Path], Optional[subprocess.Popen[Any]]]
    note: str = ''


def wait_listening(port: int, proc: subprocess.Popen[Any],
                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'{proc.args!r} exited with {proc.returncode}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f'nothing listens on port {port}')


def start_haproxy(listen: int, sink: int, tmp: Path,
                  ) -> subprocess.Popen[Any]:
    config = tmp / f'haproxy-{listen}.cfg'
    config.write_text(f"""\
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 10s
    timeout client 600s
    timeout server 600s
frontend bench
    bind 127.0.0.1:{listen}
    default_backend sink
backend sink
    server sink 127.0.0.1:{sink} send-proxy-v2
""")
    proc = subprocess.Popen(['haproxy', '-db', '-f', str(config)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(listen, proc)
    return proc


def ours(*extra: str, query: str = '?pp=v2&tlv=none'
         ) -> Callable[[int, int, Path], subprocess.Popen[Any]]:
    def start(listen: int, sink: int, tmp: Path) -> subprocess.Popen[Any]:
        log = open(tmp / f'ours-{listen}.log', 'w')
        proc = subprocess.Popen(
            [sys.executable, '-m', 'proxyprotocol.server.main', *extra,
             '--service', f'127.0.0.1:{listen}', f'127.0.0.1:{sink}{query}'],
            stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        wait_listening(listen, proc)
        if '--workers' in extra:
            # Every worker must be listening before the measurement.
            want = int(extra[extra.index('--workers') + 1])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = (tmp / f'ours-{listen}.log').read_text()
                if text.count(' ready (') >= want:
                    break
                time.sleep(0.05)
        return proc
    return start


def direct(listen: int, sink: int, tmp: Path) -> None:
    return None


def splice_loop(listen: int, sink: int, tmp: Path) -> subprocess.Popen[Any]:
    """The reference relay (``splice_relay.py``): one connection."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / 'splice_relay.py'), str(listen),
         str(sink)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != 'READY':
        stop(proc)
        raise RuntimeError('splice_relay.py did not start')
    return proc


def run_loadgen(*args: str, timeout: float = 300) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(LOADGEN), *args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f'loadgen {args}: {out.stderr.strip()}')
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- measurements -------------------------------------------------------------

@dataclass
class Short:
    rate: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: int = 0


def measure_short(subject: Subject, tmp: Path, duration: float,
                  concurrency: int) -> tuple[float, Optional[float], int]:
    sink = Sink('short')
    proc = None
    try:
        listen = sink.port
        if subject.start is not direct:
            listen = free_port()
            proc = subject.start(listen, sink.port, tmp)
        # A short warm-up, then the measurement.
        run_loadgen('short', '--port', str(listen), '--duration', '0.5',
                    '--concurrency', str(concurrency))
        pids = proc_tree(proc.pid) if proc is not None else []
        before = cpu_seconds(pids)
        result = run_loadgen('short', '--port', str(listen), '--duration',
                             str(duration), '--concurrency', str(concurrency))
        after = cpu_seconds(pids)
    finally:
        stop(proc)
        stats = sink.close()
    done = result['connections']
    cpu = (after - before) / done * 1e6 if proc is not None and done else None
    if proc is not None and stats.get('first_header', '')[:24] != \
            '0d0a0d0a000d0a515549540a':
        raise RuntimeError(f'{subject.name}: the sink saw no v2 header')
    return result['rate'], cpu, result['errors']


def measure_bulk(subject: Subject, tmp: Path, size: int) -> float:
    sink = Sink('bulk')
    proc = None
    try:
        listen = sink.port
        if subject.start is not direct:
            listen = free_port()
            proc = subject.start(listen, sink.port, tmp)
        result = run_loadgen('bulk', '--port', str(listen), '--size',
                             str(size))
    finally:
        stop(proc)
        stats = sink.close()
    if stats.get('bytes') != size:
        raise RuntimeError(f'{subject.name}: the sink got {stats.get("bytes")}'
                           f' bytes of {size}')
    return float(result['bytes_per_second'])


def measure_idle(subject: Subject, tmp: Path, count: int
                 ) -> tuple[float, int, int]:
    sink = Sink('idle')
    listen = free_port()
    proc = subject.start(listen, sink.port, tmp)
    assert proc is not None
    client = None
    try:
        time.sleep(0.3)
        pids = proc_tree(proc.pid)
        before = rss_kib(pids)
        client = subprocess.Popen(
            [sys.executable, str(LOADGEN), 'idle', '--port', str(listen),
             '--count', str(count)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdin is not None
        line = client.stdout.readline()
        if line.strip() != 'OPEN':
            raise RuntimeError(f'{subject.name}: idle clients failed')
        time.sleep(0.5)
        after = rss_kib(pids)
        client.stdin.close()
        client.wait(60)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        stop(proc)
        sink.close()
    return (after - before) / count, before, after


def measure_slow(subject: Subject, tmp: Path, size: int, rate: int
                 ) -> tuple[float, float, float]:
    sink = Sink('slow', '--slow-rate', str(rate))
    listen = free_port()
    proc = subject.start(listen, sink.port, tmp)
    assert proc is not None
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            try:
                peak[0] = max(peak[0], status_kib(proc.pid, 'VmRSS'))
            except (OSError, KeyError):
                return

    watcher = threading.Thread(target=sample, daemon=True)
    try:
        before = status_kib(proc.pid, 'VmRSS')
        watcher.start()
        result = run_loadgen('bulk', '--port', str(listen), '--size',
                             str(size), timeout=600)
        done.set()
        watcher.join()
        hwm = status_kib(proc.pid, 'VmHWM')
    finally:
        done.set()
        stop(proc)
        stats = sink.close()
    if stats.get('bytes') != size:
        raise RuntimeError(f'slow: the sink got {stats.get("bytes")} bytes')
    return max(hwm, peak[0]) / 1024, before / 1024, \
        float(result['bytes_per_second'])


# -- the report ----------------------------------------------------------------

def verdict(ok: bool) -> str:
    return 'PASS' if ok else 'FAIL'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='1 round of 1 s, 256 MiB bulk, 500 idle, 256 MiB '
                        'slow upload: a smoke test, numbers are rough')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--duration', type=float, default=3.0)
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--bulk-size', type=int, default=2 << 30)
    parser.add_argument('--idle-count', type=int, default=2000)
    parser.add_argument('--slow-size', type=int, default=1 << 30)
    parser.add_argument('--slow-rate', type=int, default=160 << 20)
    parser.add_argument('--json', metavar='FILE')
    parser.add_argument('--check', action='store_true',
                        help='exit with status 1 when a target is missed')
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 1.0
        args.bulk_size = args.slow_size = 256 << 20
        args.idle_count = 500
    if shutil.which('haproxy') is None:
        print('haproxy is not installed (apt-get install haproxy)',
              file=sys.stderr)
        return 1
    try:
        import uvloop   # noqa: F401
        loop = 'uvloop'
    except ImportError:
        loop = 'asyncio (uvloop not installed)'
    haproxy_version = subprocess.run(['haproxy', '-v'], capture_output=True,
                                     text=True).stdout.splitlines()[0]
    print(f'machine: {platform.platform()}, {os.cpu_count()} CPUs, Python '
          f'{platform.python_version()}, event loop {loop}')
    print(f'{haproxy_version}')
    print()
    subjects = [
        Subject('direct', direct, 'client to sink, no proxy'),
        Subject('haproxy', start_haproxy, 'nbthread 1, send-proxy-v2'),
        Subject('ours', ours(), 'proxyprotocol-server, v2 header, no TLV'),
        Subject('ours +tlv', ours(query='?pp=v2'),
                'v2 with CRC32C and UNIQUE_ID TLVs (the default)'),
        Subject('ours x2', ours('--workers', '2'), '--workers 2'),
    ]
    by_name = {s.name: s for s in subjects}
    by_name['splice loop'] = Subject(
        'splice loop', splice_loop, 'reference: a bare blocking splice '
        'loop, the most a user-space relay gets here')
    report: dict[str, Any] = {'machine': {
        'platform': platform.platform(), 'cpus': os.cpu_count(),
        'python': platform.python_version(), 'loop': loop,
        'haproxy': haproxy_version}}
    failures = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='pp-bench-') as tmp_name:
        tmp = Path(tmp_name)
        # 1. short connections
        print(f'short connections: {args.concurrency} concurrent, '
              f'{args.rounds} x {args.duration:g} s per subject, interleaved')
        shorts = {s.name: Short() for s in subjects}
        for round_no in range(args.rounds):
            order = subjects if round_no % 2 == 0 else subjects[::-1]
            for subject in order:
                try:
                    rate, cpu, errors = measure_short(
                        subject, tmp, args.duration, args.concurrency)
                except (RuntimeError, OSError, subprocess.SubprocessError,
                        KeyError, ValueError) as exc:
                    print(f'  {subject.name}: ERROR {exc}')
                    failures += 1
                    continue
                entry = shorts[subject.name]
                entry.rate.append(rate)
                if cpu is not None:
                    entry.cpu_us.append(cpu)
                entry.errors += errors
        med = {n: (statistics.median(s.rate) if s.rate else float('nan'),
                   statistics.median(s.cpu_us) if s.cpu_us else float('nan'))
               for n, s in shorts.items()}
        h_rate, h_cpu = med['haproxy']
        print(f'  {"subject":<11} {"conn/s":>8} {"x haproxy":>9} '
              f'{"CPU us/conn":>11} {"x haproxy":>9}  errors  rounds')
        for subject in subjects:
            rate, cpu = med[subject.name]
            s = shorts[subject.name]
            cpu_text = f'{cpu:11.1f}' if s.cpu_us else f'{"-":>11}'
            cpu_ratio = f'{cpu / h_cpu:9.2f}' if s.cpu_us else f'{"-":>9}'
            print(f'  {subject.name:<11} {rate:8.0f} {rate / h_rate:9.2f} '
                  f'{cpu_text} {cpu_ratio}  {s.errors:6d}  '
                  f'{", ".join(f"{r:.0f}" for r in s.rate)}')
        report['short'] = {n: {'rate': med[n][0], 'cpu_us': med[n][1],
                               'rates': shorts[n].rate,
                               'cpus_us': shorts[n].cpu_us,
                               'errors': shorts[n].errors} for n in shorts}
        print()
        # 2. bulk
        print(f'bulk: one connection, {args.bulk_size >> 20} MiB')
        bulk: dict[str, list[float]] = {}
        for round_no in range(2 if not args.quick else 1):
            for name in ('direct', 'haproxy', 'ours', 'splice loop'):
                try:
                    bulk.setdefault(name, []).append(
                        measure_bulk(by_name[name], tmp, args.bulk_size))
                except (RuntimeError, OSError,
                        subprocess.SubprocessError) as exc:
                    print(f'  {name}: ERROR {exc}')
                    failures += 1
        best = {n: max(v) for n, v in bulk.items() if v}
        for name, value in best.items():
            ratio = value / best['direct'] if 'direct' in best else \
                float('nan')
            print(f'  {name:<11} {value / 2**20:9.0f} MiB/s  {ratio:5.2f}x '
                  f'direct  ({by_name[name].note})')
        report['bulk'] = {n: {'bytes_per_second': best[n],
                              'runs': bulk[n]} for n in best}
        print()
        # 3. idle connections
        print(f'idle: {args.idle_count} connections held open')
        idle: dict[str, tuple[float, int, int]] = {}
        for name in ('haproxy', 'ours'):
            try:
                idle[name] = measure_idle(by_name[name], tmp, args.idle_count)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                print(f'  {name}: ERROR {exc}')
                failures += 1
                continue
            per, before, after = idle[name]
            print(f'  {name:<11} {per:6.2f} KiB/connection (RSS {before} -> '
                  f'{after} KiB)')
        report['idle'] = {n: {'kib_per_connection': v[0], 'rss_before_kib':
                              v[1], 'rss_after_kib': v[2]}
                          for n, v in idle.items()}
        print()
        # 4. slow reader
        print(f'slow reader: {args.slow_size >> 20} MiB upload, the sink reads '
              f'{args.slow_rate >> 20} MiB/s')
        slow = None
        try:
            slow = measure_slow(by_name['ours'], tmp, args.slow_size,
                                args.slow_rate)
            print(f'  ours        peak RSS {slow[0]:.1f} MiB (at start '
                  f'{slow[1]:.1f} MiB), {slow[2] / 2**20:.0f} MiB/s')
            report['slow'] = {'peak_rss_mib': slow[0],
                              'start_rss_mib': slow[1],
                              'bytes_per_second': slow[2]}
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f'  ours: ERROR {exc}')
            failures += 1
        print()
    # Targets
    o_rate, o_cpu = med['ours']
    checks = [
        ('short connections: rate >= 0.75x HAProxy', o_rate / h_rate,
         o_rate / h_rate >= TARGETS['short_rate']),
        ('short connections: CPU/conn <= 1.5x HAProxy', o_cpu / h_cpu,
         o_cpu / h_cpu <= TARGETS['short_cpu']),
    ]
    if 'ours' in best and 'direct' in best:
        ratio = best['ours'] / best['direct']
        checks.append(('bulk: >= 0.8x direct', ratio,
                       ratio >= TARGETS['bulk']))
    if 'ours' in idle:
        checks.append(('idle: <= 16 KiB/connection', idle['ours'][0],
                       idle['ours'][0] <= TARGETS['idle_kib']))
    if slow is not None:
        checks.append(('slow reader: peak RSS < 64 MiB', slow[0],
                       slow[0] < TARGETS['slow_mib']))
    print('targets:')
    for text, value, ok in checks:
        print(f'  {verdict(ok)}  {text:<46} {value:8.2f}')
    report['targets'] = [{'target': t, 'value': v, 'pass': ok}
                         for t, v, ok in checks]
    print(f'\n(took {time.monotonic() - started:.0f} s)')
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if failures:
        return 1
    if args.check and not all(ok for _, _, ok in checks):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
