"""Codec benchmark: this project's proxyprotocol against upstream proxy-protocol 0.11.3.

Run from the repository root, with this project installed in the current
interpreter (``pip install -e .``)::

    python bench/codec.py [--json FILE]

Upstream 0.11.3 is installed (default install, no ``crc32c`` extra) into the
venv ``bench/.venv-upstream-0.11.3``, created on first use and reused while
valid. Both sides run the same worker, ``bench/codec_timing.py``, in their own
interpreter; the upstream one runs isolated (``python -I``, cwd outside the
repository), so it cannot import this tree. Rounds alternate the two sides
(upstream, ours, then ours, upstream, ...), and the reported time of a case is
the minimum per-call time over all batches of all rounds.

The exit status is 0 whether or not the speed target is met (this is a report);
1 when a case or a worker failed; 2 when the setup (venv, our package) failed.

"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

UPSTREAM_VERSION = '0.11.3'
TARGET_SPEEDUP = 5.0

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKER = BENCH_DIR / 'codec_timing.py'
DEFAULT_VENV = BENCH_DIR / f'.venv-upstream-{UPSTREAM_VERSION}'

#: Seconds allowed for each external step; none of them should come close.
VENV_CREATE_TIMEOUT = 300
PIP_INSTALL_TIMEOUT = 600
WORKER_TIMEOUT = 300

#: Run inside the venv to tell whether it is usable as it stands.
VENV_PROBE = """\
import importlib.metadata as md, importlib.util as iu, json, sys
try:
    version = md.version('proxy-protocol')
except md.PackageNotFoundError:
    version = None
print(json.dumps({'python': sys.version.split()[0], 'version': version,
                  'crc32c': iu.find_spec('crc32c') is not None}))
"""


class SetupError(Exception):
    """The benchmark cannot run; the message says why and what to do."""


class WorkerError(Exception):
    """A timing worker crashed or returned something unusable."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def clean_env() -> dict[str, str]:
    """The environment without variables that steer Python's imports."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith('PYTHON') and k != 'VIRTUAL_ENV'}


def venv_python(venv: Path) -> Path:
    win = venv / 'Scripts' / 'python.exe'
    return win if win.exists() else venv / 'bin' / 'python'


def probe_venv(venv: Path) -> dict[str, Any] | None:
    """What the venv holds, or None if its interpreter does not run."""
    python = venv_python(venv)
    if not python.exists():
        return None
    try:
        proc = subprocess.run([str(python), '-I', '-c', VENV_PROBE], capture_output=True,
                              text=True, timeout=60, cwd=tempfile.gettempdir(),
                              env=clean_env())
        info: dict[str, Any] = json.loads(proc.stdout)
        return info
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def venv_problem(info: dict[str, Any] | None) -> str | None:
    """Why the probed venv is unusable, or None when it is fine."""
    if info is None:
        return 'no working interpreter'
    here = sys.version.split()[0]
    if info.get('python') != here:
        return f"its Python is {info.get('python')}, this one is {here}"
    if info.get('version') != UPSTREAM_VERSION:
        return f"proxy-protocol {info.get('version')} installed, want {UPSTREAM_VERSION}"
    if info.get('crc32c'):
        return 'the crc32c package is installed (the default install has none)'
    return None


def run_step(cmd: list[str], timeout: int, what: str, hint: str) -> None:
    log(f'  $ {" ".join(cmd)}')
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=tempfile.gettempdir(), env=clean_env())
    except subprocess.TimeoutExpired:
        raise SetupError(f'{what}: timed out after {timeout} s. {hint}') from None
    except OSError as exc:
        raise SetupError(f'{what}: {exc}. {hint}') from None
    if proc.returncode != 0:
        tail = '\n'.join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SetupError(f'{what} failed (exit {proc.returncode}):\n{tail}\n{hint}')


def ensure_upstream_venv(venv: Path, recreate: bool) -> Path:
    """Create (or reuse if valid) the venv with upstream's default install."""
    problem = 'recreation requested' if recreate else venv_problem(probe_venv(venv))
    if problem is None:
        log(f'upstream venv: reusing {venv}')
        return venv_python(venv)
    if venv.exists():
        if not (venv / 'pyvenv.cfg').exists():
            raise SetupError(f'{venv} exists but is not a venv (no pyvenv.cfg); '
                             'move it away or pass --venv DIR')
        log(f'upstream venv: {venv} is not usable ({problem}); recreating it')
        shutil.rmtree(venv)
    else:
        log(f'upstream venv: creating {venv}')
    run_step([sys.executable, '-m', 'venv', str(venv)], VENV_CREATE_TIMEOUT,
             'creating the upstream venv',
             'Check that the venv module works for this Python (on Debian system '
             'Pythons: apt-get install python3-venv) and that the disk is writable.')
    run_step([str(venv_python(venv)), '-m', 'pip', 'install', '--disable-pip-version-check',
              '--no-input', f'proxy-protocol=={UPSTREAM_VERSION}'], PIP_INSTALL_TIMEOUT,
             f'pip install proxy-protocol=={UPSTREAM_VERSION} into the upstream venv',
             'Check that PyPI is reachable; delete the venv directory to start over.')
    problem = venv_problem(probe_venv(venv))
    if problem is not None:
        raise SetupError(f'the new upstream venv {venv} is still unusable: {problem}')
    return venv_python(venv)


def run_worker(label: str, python: str, args: list[str], isolated: bool) -> dict[str, Any]:
    """Run the timing worker once and return its JSON report."""
    if isolated:
        cmd = [python, '-I', str(WORKER), '--forbid-root', str(REPO_ROOT)] + args
        cwd, env = tempfile.gettempdir(), clean_env()
    else:
        cmd = [python, str(WORKER)] + args
        cwd, env = str(REPO_ROOT), dict(os.environ)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env,
                              timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise WorkerError(f'{label} worker timed out after {WORKER_TIMEOUT} s') from None
    try:
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise WorkerError(f'{label} worker exited {proc.returncode} without a report:\n'
                          f'{proc.stderr.strip()[-3000:]}') from None
    if 'fatal' in report:
        raise WorkerError(f'{label} worker could not run:\n{report["fatal"]}')
    return report


@dataclass
class Row:
    case: str
    op: str
    upstream_us: float | None = None
    ours_us: float | None = None
    native_us: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        if self.upstream_us and self.ours_us:
            return self.upstream_us / self.ours_us
        return None

    @property
    def native_speedup(self) -> float | None:
        if self.upstream_us and self.native_us:
            return self.upstream_us / self.native_us
        return None

    def passes(self, target: float) -> bool:
        speedup = self.speedup
        return speedup is not None and speedup >= target and not self.errors


def merge(rows: dict[tuple[str, str], Row], side: str, report: dict[str, Any]) -> None:
    """Fold one worker report into the rows, keeping per-case minimum times."""
    for entry in report['cases']:
        row = rows.setdefault((entry['case'], entry['op']), Row(entry['case'], entry['op']))
        attr = 'native_us' if entry.get('native') else f'{side}_us'
        if 'error' in entry:
            tag = 'ours native' if entry.get('native') else side
            msg = f'{tag}: {entry["error"]}'
            if msg not in row.errors:
                row.errors.append(msg)
            continue
        if 'min_ns' not in entry:
            continue
        value = entry['min_ns'] / 1000.0
        current = getattr(row, attr)
        setattr(row, attr, value if current is None else min(current, value))


def fmt_us(value: float | None, missing: str = 'n/a') -> str:
    return missing if value is None else f'{value:.3f}'


def fmt_x(value: float | None) -> str:
    return '-' if value is None else f'{value:.2f}x'


def yes_no(value: Any) -> str:
    return 'yes' if value is True else ('no' if value is False else 'unknown')


def describe(label: str, impl: dict[str, Any]) -> str:
    return (f'{label}: proxy-protocol {impl.get("version")} from {impl.get("file")} '
            f'(python {impl.get("python")})')


def print_report(rows: list[Row], meta: dict[str, Any], target: float,
                 native_note: str | None) -> None:
    print(f'PROXY protocol codec benchmark: ours (0.11 API) vs upstream proxy-protocol '
          f'{UPSTREAM_VERSION}')
    for key in ('upstream', 'ours'):
        if key in meta:
            print(describe(f'  {key}', meta[key]))
    print('  upstream is the DEFAULT install (no crc32c extra): its checksum.crc32c is None,'
          ' so it neither verifies nor emits the CRC32C TLV')
    for key in ('upstream', 'ours'):
        if key in meta:
            impl = meta[key]
            print(f'  {key} measured: verifies CRC32C on parse: '
                  f'{yes_no(impl.get("verifies_crc32c"))}, emits CRC32C TLV on v2 build: '
                  f'{yes_no(impl.get("emits_crc32c"))} (checksum function: {impl.get("crc32c")})')
    print(f'  timing: min per-call time over {meta["batches"]} batches per case '
          f'({meta["rounds"]} rounds x {meta["repeats"]}, sides alternating), '
          f'~{meta["batch_time"]} s per batch, gc off while timing, loop overhead included')
    print(f'  native: {native_note or "n/a"}')
    print()
    header = (f'{"case":<24} {"op":<6} {"upstream us/op":>14} {"ours us/op":>11} '
              f'{"speedup":>9} {"native us/op":>13} {"native x":>9}  target')
    print(header)
    print('-' * len(header))
    for row in rows:
        verdict = 'ERROR' if row.errors else ('PASS' if row.passes(target) else 'FAIL')
        if row.ours_us is None and not row.errors:
            verdict = '-'
        native = fmt_us(row.native_us, 'n/a' if row.op == 'parse' else '-')
        print(f'{row.case:<24} {row.op:<6} {fmt_us(row.upstream_us):>14} '
              f'{fmt_us(row.ours_us):>11} {fmt_x(row.speedup):>9} {native:>13} '
              f'{fmt_x(row.native_speedup):>9}  {verdict}')
    print()
    for row in rows:
        for err in row.errors:
            print(f'ERROR {row.case} {row.op}: {err}')
    passed = sum(row.passes(target) for row in rows)
    overall = 'PASS' if rows and passed == len(rows) else 'FAIL'
    if all(row.ours_us is None for row in rows) and not any(row.errors for row in rows):
        overall = 'not evaluated (no timings of ours)'
    print(f'Target: every case at least {target:g}x faster than {UPSTREAM_VERSION} '
          f'(upstream us/op / ours us/op, 0.11 API): {overall} ({passed}/{len(rows)} cases)')
    print('Notes: v2 "build" of ours includes computing the CRC32C TLV, upstream\'s does not;'
          ' "detect v1 TCP4 build" is ProxyProtocolDetect(V1(), V2()).pack')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time parse/build of ours against upstream proxy-protocol '
                    f'{UPSTREAM_VERSION} (0.11 API).')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON')
    parser.add_argument('--rounds', type=int, default=2,
                        help='worker runs per side, alternating sides (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=4,
                        help='timed batches per case per round (default: %(default)s)')
    parser.add_argument('--batch-time', type=float, default=0.1,
                        help='seconds per timed batch (default: %(default)s)')
    parser.add_argument('--quick', action='store_true',
                        help='smoke run: 1 round, 2 batches of 0.01 s (numbers are rough)')
    parser.add_argument('--target', type=float, default=TARGET_SPEEDUP,
                        help='required speedup per case (default: %(default)s)')
    parser.add_argument('--venv', type=Path, default=DEFAULT_VENV,
                        help=f'upstream venv directory (default: bench/{DEFAULT_VENV.name})')
    parser.add_argument('--recreate-venv', action='store_true',
                        help='delete and recreate the upstream venv first')
    parser.add_argument('--upstream-only', action='store_true',
                        help='time upstream alone (ours need not be installed)')
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats, args.batch_time = 1, 2, 0.01
    args.rounds = max(1, min(args.rounds, 10))
    args.repeats = max(1, min(args.repeats, 50))
    args.batch_time = max(0.001, min(args.batch_time, 1.0))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    venv = args.venv.resolve()
    try:
        upstream_python = str(ensure_upstream_venv(venv, args.recreate_venv))
        if not args.upstream_only and importlib.util.find_spec('proxyprotocol') is None:
            raise SetupError('our proxyprotocol is not importable by this interpreter '
                             f'({sys.executable}); run: pip install -e {REPO_ROOT}')
    except SetupError as exc:
        log(f'error: {exc}')
        return 2

    worker_args = ['--repeats', str(args.repeats), '--batch-time', str(args.batch_time)]
    sides = [('upstream', upstream_python, True)]
    if not args.upstream_only:
        sides.append(('ours', sys.executable, False))
    rows: dict[tuple[str, str], Row] = {}
    meta: dict[str, Any] = {'rounds': args.rounds, 'repeats': args.repeats,
                            'batches': args.rounds * args.repeats,
                            'batch_time': args.batch_time}
    crashed = False
    for rnd in range(args.rounds):
        order = sides if rnd % 2 == 0 else sides[::-1]
        for label, python, isolated in order:
            log(f'round {rnd + 1}/{args.rounds}: timing {label} ...')
            extra = ['--native'] if label == 'ours' else []
            try:
                report = run_worker(label, python, worker_args + extra, isolated)
            except WorkerError as exc:
                log(f'error: {exc}')
                crashed = True
                continue
            meta[label] = report['impl']
            if label == 'ours':
                native_note = report.get('notes', {}).get('native')
            merge(rows, label, report)

    ordered = sorted(rows.values(), key=lambda r: r.op != 'parse')  # stable: parse first
    if not ordered:
        log('error: no timings were produced')
        return 1
    meta['elapsed_s'] = round(time.monotonic() - started, 1)
    print_report(ordered, meta, args.target, native_note)
    print(f'(total {meta["elapsed_s"]} s)')

    if args.json:
        doc = {
            'target_speedup': args.target,
            'all_pass': all(r.passes(args.target) for r in ordered),
            'upstream_crc32c': 'default install without crc32c: no CRC32C verify/emit',
            'native': native_note,
            'meta': meta,
            'rows': [dict(asdict(r), speedup=r.speedup, native_speedup=r.native_speedup,
                          passed=r.passes(args.target)) for r in ordered],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + '\n')
        log(f'wrote {args.json}')
    errors = any(r.errors for r in ordered)
    return 1 if crashed or errors else 0


if __name__ == '__main__':
    sys.exit(main())
