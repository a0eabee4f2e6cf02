"""Timing worker of the codec benchmark (run by ``bench/codec.py``).

It times whichever ``proxyprotocol`` the running interpreter imports, through
the 0.11 API only (``unpack``/``pack`` of ``ProxyProtocolV1``,
``ProxyProtocolV2`` and ``ProxyProtocolDetect``), so the same file measures
upstream 0.11.3 (in its own venv) and this project. With ``--native`` it also
times ``proxyprotocol.header.parse_header`` when that exists.

The file is self-contained on purpose (standard library only, no sibling
imports): the upstream run uses ``python -I`` from a directory outside the
repository, so nothing next to this file is importable there.

Output: one JSON document on stdout. Exit status 0 when every case ran, 1 when
a case failed its sanity check or raised (the error is in the JSON), 2 when the
package cannot be used at all.

"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from itertools import repeat
from typing import Any, Callable

#: Upper bound on calls in one timed batch, whatever the calibration says.
MAX_LOOPS = 5_000_000

# --- wire inputs, built here so that both implementations parse the same bytes

V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'

SRC4 = (IPv4Address('192.168.0.1'), 56324)
DST4 = (IPv4Address('192.168.0.11'), 443)
SRC6 = (IPv6Address('2001:db8::1'), 56324)
DST6 = (IPv6Address('2001:db8::2'), 443)

ALPN = b'h2'
AUTHORITY = 'example.com'
UNIQUE_ID = bytes(range(0x10, 0x20))  # 16 bytes
SSL_VERSION = 'TLSv1.3'
SSL_CN = 'client.example'
SSL_CIPHER = 'TLS_AES_128_GCM_SHA256'
SSL_SIG_ALG = 'RSA-SHA256'
SSL_KEY_ALG = 'RSA2048'

V1_TCP4 = b'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'
V1_TCP6 = b'PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n'


def crc32c_bitwise(data: bytes) -> int:
    """CRC32C (Castagnoli, reflected 0x82F63B78), bit by bit; used once."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def _tlv(type_: int, value: bytes) -> bytes:
    return struct.pack('!BH', type_, len(value)) + value


def build_v2_tcp4() -> bytes:
    """A v2 PROXY/TCP over IPv4 header without TLVs (what HAProxy sends by default)."""
    addr = struct.pack('!4s4sHH', SRC4[0].packed, DST4[0].packed, SRC4[1], DST4[1])
    return V2_SIGNATURE + struct.pack('!BBH', 0x21, 0x11, len(addr)) + addr


def build_v2_tcp6_tlvs() -> bytes:
    """A v2 PROXY/TCP over IPv6 header with ALPN, AUTHORITY, UNIQUE_ID, SSL
    (client=PP2_CLIENT_SSL, verify=0, five sub-TLVs) and a valid CRC32C TLV.

    TLVs are in ascending type order, which is also how both implementations
    serialise them, so upstream's re-serialising CRC check agrees with ours.
    """
    ssl_value = struct.pack('!BL', 0x01, 0) + b''.join([
        _tlv(0x21, SSL_VERSION.encode('ascii')),
        _tlv(0x22, SSL_CN.encode('utf-8')),
        _tlv(0x23, SSL_CIPHER.encode('ascii')),
        _tlv(0x24, SSL_SIG_ALG.encode('ascii')),
        _tlv(0x25, SSL_KEY_ALG.encode('ascii')),
    ])

    def assemble(crc: int) -> bytes:
        tlvs = b''.join([
            _tlv(0x01, ALPN),
            _tlv(0x02, AUTHORITY.encode('utf-8')),
            _tlv(0x03, struct.pack('!L', crc)),
            _tlv(0x05, UNIQUE_ID),
            _tlv(0x20, ssl_value),
        ])
        addr = struct.pack('!16s16sHH', SRC6[0].packed, DST6[0].packed, SRC6[1], DST6[1])
        body = addr + tlvs
        return V2_SIGNATURE + struct.pack('!BBH', 0x21, 0x21, len(body)) + body

    return assemble(crc32c_bitwise(assemble(0)))


V2_TCP4 = build_v2_tcp4()
V2_TCP6_TLVS = build_v2_tcp6_tlvs()

# --- cases


@dataclass
class Case:
    """One timed operation: ``func(arg)`` plus a check of its output."""

    name: str
    op: str  # 'parse' or 'build'
    func: Callable[[Any], Any]
    arg: Any
    check: Callable[[Any], None]
    native: bool = False


class CheckFailed(Exception):
    """The operation returned something other than what the case expects."""


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def make_cases(pp: Any, native: bool) -> tuple[list[Case], dict[str, str]]:
    """Build the cases against the imported package ``pp``.

    Returns the cases and notes on the optional native API.
    """
    from proxyprotocol.detect import ProxyProtocolDetect
    from proxyprotocol.result import ProxyResultIPv4, ProxyResultIPv6
    from proxyprotocol.tlv import ProxyProtocolSSLTLV, ProxyProtocolTLV
    from proxyprotocol.v1 import ProxyProtocolV1
    from proxyprotocol.v2 import ProxyProtocolV2

    v1, v2, detect = ProxyProtocolV1(), ProxyProtocolV2(), ProxyProtocolDetect()
    detect_v1_first = ProxyProtocolDetect(ProxyProtocolV1(), ProxyProtocolV2())
    stream = socket.SOCK_STREAM

    res4 = ProxyResultIPv4(SRC4, DST4, protocol=stream)
    res6 = ProxyResultIPv6(SRC6, DST6, protocol=stream)
    tlv = ProxyProtocolTLV(
        alpn=ALPN, authority=AUTHORITY, unique_id=UNIQUE_ID,
        ssl=ProxyProtocolSSLTLV(
            has_ssl=True, verified=True, version=SSL_VERSION, cn=SSL_CN,
            cipher=SSL_CIPHER, sig_alg=SSL_SIG_ALG, key_alg=SSL_KEY_ALG))
    res6_tlv = ProxyResultIPv6(SRC6, DST6, protocol=stream, tlv=tlv)

    def addresses(src: Any, dst: Any) -> Callable[[Any], None]:
        def check(result: Any) -> None:
            expect(tuple(result.source) == src, f'source {result.source!r} != {src!r}')
            expect(tuple(result.dest) == dst, f'dest {result.dest!r} != {dst!r}')
        return check

    def check_tlvs(result: Any) -> None:
        addresses(SRC6, DST6)(result)
        t = result.tlv
        expect(t.alpn == ALPN, f'alpn {t.alpn!r}')
        expect(t.authority == AUTHORITY, f'authority {t.authority!r}')
        expect(t.unique_id == UNIQUE_ID, f'unique_id {t.unique_id!r}')
        expect(t.crc32c is not None, 'crc32c TLV missing')
        ssl = t.ssl
        expect(bool(ssl.has_ssl) and bool(ssl.verified), 'ssl flags')
        got = (ssl.version, ssl.cn, ssl.cipher, ssl.sig_alg, ssl.key_alg)
        want = (SSL_VERSION, SSL_CN, SSL_CIPHER, SSL_SIG_ALG, SSL_KEY_ALG)
        expect(got == want, f'ssl sub-TLVs {got!r}')

    def roundtrip(parser: Any, check: Callable[[Any], None],
                  prefix: bytes) -> Callable[[Any], None]:
        def check_built(data: Any) -> None:
            expect(isinstance(data, bytes), f'pack returned {type(data).__name__}')
            expect(data.startswith(prefix), f'unexpected header start {data[:16]!r}')
            check(parser.unpack(data))
        return check_built

    def check_built_tlvs(data: Any) -> None:
        expect(isinstance(data, bytes), f'pack returned {type(data).__name__}')
        result = v2.unpack(data)
        addresses(SRC6, DST6)(result)
        t = result.tlv
        expect((t.alpn, t.authority, t.unique_id) == (ALPN, AUTHORITY, UNIQUE_ID),
               'alpn/authority/unique_id lost')
        ssl = t.ssl
        got = (ssl.version, ssl.cn, ssl.cipher, ssl.sig_alg, ssl.key_alg)
        expect(got == (SSL_VERSION, SSL_CN, SSL_CIPHER, SSL_SIG_ALG, SSL_KEY_ALG),
               f'ssl sub-TLVs {got!r}')

    a4, a6 = addresses(SRC4, DST4), addresses(SRC6, DST6)
    cases = [
        Case('v1 TCP4', 'parse', v1.unpack, V1_TCP4, a4),
        Case('v1 TCP4', 'build', v1.pack, res4, roundtrip(v1, a4, b'PROXY TCP4 ')),
        Case('v1 TCP6', 'parse', v1.unpack, V1_TCP6, a6),
        Case('v1 TCP6', 'build', v1.pack, res6, roundtrip(v1, a6, b'PROXY TCP6 ')),
        Case('v2 TCP4', 'parse', v2.unpack, V2_TCP4, a4),
        Case('v2 TCP4', 'build', v2.pack, res4, roundtrip(v2, a4, V2_SIGNATURE)),
        Case('v2 TCP6 +TLVs +CRC32C', 'parse', v2.unpack, V2_TCP6_TLVS, check_tlvs),
        Case('v2 TCP6 +TLVs +CRC32C', 'build', v2.pack, res6_tlv, check_built_tlvs),
        Case('detect v2 TCP4', 'parse', detect.unpack, V2_TCP4, a4),
        Case('detect v2 TCP4', 'build', detect.pack, res4,
             roundtrip(v2, a4, V2_SIGNATURE)),
        Case('detect v1 TCP4', 'parse', detect.unpack, V1_TCP4, a4),
        Case('detect v1 TCP4', 'build', detect_v1_first.pack, res4,
             roundtrip(v1, a4, b'PROXY TCP4 ')),
    ]

    notes: dict[str, str] = {}
    if native:
        try:
            parse_header = importlib.import_module('proxyprotocol.header').parse_header
        except (ImportError, AttributeError) as exc:
            notes['native'] = f'n/a ({type(exc).__name__}: {exc})'
        else:
            notes['native'] = 'proxyprotocol.header.parse_header'
            inputs = [('v1 TCP4', V1_TCP4, a4), ('v1 TCP6', V1_TCP6, a6),
                      ('v2 TCP4', V2_TCP4, a4), ('v2 TCP6 +TLVs +CRC32C', V2_TCP6_TLVS,
                                                 check_tlvs),
                      ('detect v2 TCP4', V2_TCP4, a4), ('detect v1 TCP4', V1_TCP4, a4)]
            for name, data, check in inputs:
                cases.append(Case(name, 'parse', parse_header, data,
                                  _native_check(check, len(data)), native=True))
    return cases, notes


def _native_check(check: Callable[[Any], None], length: int) -> Callable[[Any], None]:
    def check_native(parsed: Any) -> None:
        expect(parsed.length == length, f'length {parsed.length!r} != {length}')
        check(parsed.result)
    return check_native


# --- timing


def time_batch(func: Callable[[Any], Any], arg: Any, loops: int) -> int:
    """Run ``func(arg)`` ``loops`` times; return the elapsed nanoseconds."""
    it = repeat(None, loops)
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in it:
        func(arg)
    return clock() - t0


def calibrate(func: Callable[[Any], Any], arg: Any, batch_ns: int) -> int:
    """Number of calls for one batch to last about ``batch_ns``."""
    loops = 1
    while True:
        elapsed = time_batch(func, arg, loops)
        if elapsed >= batch_ns // 5 or loops >= MAX_LOOPS:
            break
        loops *= 10 if elapsed < batch_ns // 100 else 2
    per_call = max(elapsed / loops, 1.0)
    return max(1, min(MAX_LOOPS, math.ceil(batch_ns / per_call)))


def measure(case: Case, repeats: int, batch_ns: int) -> dict[str, Any]:
    """Time ``case``: several batches, reporting per-call minimum and median."""
    loops = calibrate(case.func, case.arg, batch_ns)
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as timeit does: collector pauses are noise, not codec cost
    try:
        for _ in range(repeats):
            samples.append(time_batch(case.func, case.arg, loops) / loops)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    return {'min_ns': samples[0], 'median_ns': samples[len(samples) // 2],
            'loops': loops, 'repeats': repeats}


def describe_impl(pp: Any) -> dict[str, Any]:
    info: dict[str, Any] = {'file': os.path.abspath(pp.__file__),
                            'python': sys.version.split()[0],
                            'executable': sys.executable}
    try:
        from importlib.metadata import version
        info['version'] = version('proxy-protocol')
    except Exception as exc:  # noqa: BLE001 - informational only
        info['version'] = f'unknown ({type(exc).__name__})'
    try:
        from proxyprotocol import checksum
        info['crc32c'] = None if checksum.crc32c is None else repr(checksum.crc32c)
    except ImportError:
        info['crc32c'] = 'no proxyprotocol.checksum module'
    try:
        import crc32c  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
        info['crc32c_package'] = True
    except ImportError:
        info['crc32c_package'] = False
    return info


def probe_crc32c() -> dict[str, Any]:
    """Whether this implementation verifies and emits the CRC32C TLV."""
    from proxyprotocol.result import ProxyResultIPv4
    from proxyprotocol.v2 import ProxyProtocolV2

    v2 = ProxyProtocolV2()
    pos = V2_TCP6_TLVS.index(b'\x03\x00\x04') + 3
    corrupt = V2_TCP6_TLVS[:pos] + bytes([V2_TCP6_TLVS[pos] ^ 0xFF]) + V2_TCP6_TLVS[pos + 1:]
    verifies: bool | None
    emits: bool | None
    try:
        v2.unpack(corrupt)
    except ValueError:  # ProxyProtocolChecksumError is a ValueError in both
        verifies = True
    except Exception:  # noqa: BLE001 - reported as unknown; the cases show the error
        verifies = None
    else:
        verifies = False
    try:
        built = v2.pack(ProxyResultIPv4(SRC4, DST4, protocol=socket.SOCK_STREAM))
        emits = len(built) == 16 + 12 + 7
    except Exception:  # noqa: BLE001
        emits = None
    return {'verifies_crc32c': verifies, 'emits_crc32c': emits}


def check_isolation(forbid: str) -> str | None:
    """Error text if ``forbid`` (the repository root) can leak into imports."""
    root = os.path.realpath(forbid)
    cwd = os.path.realpath(os.getcwd())
    if cwd == root or cwd.startswith(root + os.sep):
        return f'cwd {os.getcwd()} is inside {root}'
    for entry in sys.path:
        if os.path.realpath(entry or os.getcwd()) == root:
            return f'sys.path entry {entry!r} is the repository root {root}'
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=4)
    parser.add_argument('--batch-time', type=float, default=0.1,
                        help='seconds per timed batch (default: %(default)s)')
    parser.add_argument('--native', action='store_true',
                        help='also time proxyprotocol.header.parse_header')
    parser.add_argument('--forbid-root', metavar='DIR',
                        help='refuse to run if DIR/proxyprotocol could be imported')
    parser.add_argument('--check-only', action='store_true',
                        help='run the sanity checks and report, without timing')
    args = parser.parse_args(argv)
    out: dict[str, Any] = {'cases': []}

    if args.forbid_root:
        problem = check_isolation(args.forbid_root)
        if problem:
            print(json.dumps({'fatal': f'isolation: {problem}'}))
            return 2
    try:
        import proxyprotocol as pp
        if args.forbid_root:
            pkg_dir = os.path.join(os.path.realpath(args.forbid_root), 'proxyprotocol')
            if os.path.realpath(pp.__file__).startswith(pkg_dir + os.sep):
                print(json.dumps({'fatal': f'imported the repository tree {pp.__file__}'}))
                return 2
        out['impl'] = describe_impl(pp)
        out['impl'].update(probe_crc32c())
        cases, notes = make_cases(pp, args.native)
    except Exception:  # noqa: BLE001 - reported to the driver as JSON
        print(json.dumps({'fatal': traceback.format_exc()}))
        return 2
    out['notes'] = notes

    status = 0
    batch_ns = max(1, int(args.batch_time * 1e9))
    for case in cases:
        entry: dict[str, Any] = {'case': case.name, 'op': case.op, 'native': case.native}
        try:
            case.check(case.func(case.arg))
            if not args.check_only:
                entry.update(measure(case, max(1, args.repeats), batch_ns))
        except Exception as exc:  # noqa: BLE001 - one bad case must not hide the others
            entry['error'] = f'{type(exc).__name__}: {exc}'
            status = 1
        out['cases'].append(entry)
    print(json.dumps(out))
    return status


if __name__ == '__main__':
    sys.exit(main())
