"""``proxyprotocol decode``: explain a header given as hex, a file or stdin.

The input may be raw bytes (as captured from the wire) or hex; by default
the format is guessed: bytes that start like a header are raw, text made of
hex digits is hex. A header is read as strictly as the library reads it,
and an invalid one is explained by the field and byte offset at fault.

Exit status: 0 for a valid header, 1 for an invalid or incomplete one,
2 for a usage error.

"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import BinaryIO, Final, Optional, Union

from ..errors import NeedMore, ProxyProtocolError
from ..header import ParsedHeader, parse_header
from ..v2 import MAX_V2_LENGTH
from .format import describe, render

__all__ = ['add_parser', 'run', 'parse_hex', 'looks_like_hex',
           'unescape', 'decode_input', 'decode_bytes']

_HEX_JUNK: Final = re.compile(r'0x|\\x|[\s:,.\-]', re.IGNORECASE)
_HEX_TEXT: Final = re.compile(r'(?:0x|\\x|[0-9a-f\s:,.\-])*', re.IGNORECASE)
_ESCAPE: Final = re.compile(r'\\(x[0-9a-fA-F]{2}|[rnt0\\])')
_ESCAPES: Final = {'r': b'\r', 'n': b'\n', 't': b'\t', '0': b'\x00',
                   '\\': b'\\'}


def parse_hex(text: str) -> bytes:
    """Read hex digits, ignoring spaces, colons, ``0x`` and ``\\x``.

    Raises:
        ValueError: The text is not hex.

    """
    digits = _HEX_JUNK.sub('', text)
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError('not hex: expected pairs of hex digits, '
                         'e.g. 0d0a0d0a000d0a515549540a') from None


def looks_like_hex(text: str) -> bool:
    """Whether ``text`` holds an even number of hex digits and separators
    only."""
    if _HEX_TEXT.fullmatch(text) is None:
        return False
    digits = _HEX_JUNK.sub('', text)
    return bool(digits) and len(digits) % 2 == 0


def unescape(text: str) -> bytes:
    """Text with ``\\r``, ``\\n``, ``\\t``, ``\\0``, ``\\\\`` and ``\\xHH``
    escapes, as bytes (UTF-8)."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos:match.start()].encode('utf-8')
        code = match.group(1)
        out += bytes([int(code[1:], 16)]) if code[0] == 'x' \
            else _ESCAPES[code]
        pos = match.end()
    out += text[pos:].encode('utf-8')
    return bytes(out)


def decode_input(raw: bytes, input_format: str = 'auto') -> bytes:
    """The bytes of a header read from a file: ``raw``, or ``raw`` as hex.

    In ``auto`` format, bytes that start like a v1 or v2 header are taken
    as they are, and text of hex digits is decoded.

    """
    if input_format == 'raw':
        return raw
    if input_format == 'hex':
        return parse_hex(raw.decode('ascii', 'replace'))
    if raw.startswith((b'PROXY', b'\r\n\r\n')):
        return raw
    try:
        text = raw.decode('ascii')
    except UnicodeDecodeError:
        return raw
    if looks_like_hex(text):
        return parse_hex(text)
    return raw


def decode_bytes(data: bytes, *, versions: tuple[int, ...] = (1, 2),
                 max_length: int = MAX_V2_LENGTH
                 ) -> Union[ParsedHeader, NeedMore, ProxyProtocolError]:
    """What :func:`~proxyprotocol.header.parse_header` makes of ``data``:
    the header, what it still needs, or the error it raised."""
    try:
        return parse_header(data, versions=versions, max_length=max_length)
    except ProxyProtocolError as exc:
        return exc


def add_parser(subparsers: argparse._SubParsersAction[
        argparse.ArgumentParser]) -> None:
    """Add the ``decode`` command."""
    parser = subparsers.add_parser(
        'decode', help='explain a PROXY protocol header',
        description='Decode a PROXY protocol header given as hex, as text '
        'with escapes, in a file or on stdin, and print every field and '
        'TLV, or why it is invalid (field and byte offset).',
        epilog='examples:\n'
        '  proxyprotocol decode 0d0a0d0a000d0a515549540a2011000c...\n'
        "  proxyprotocol decode 'PROXY TCP4 192.0.2.1 198.51.100.1 "
        "5000 80\\r\\n'\n"
        '  proxyprotocol decode --file capture.bin --json\n'
        '  xxd -p capture.bin | proxyprotocol decode\n\n'
        'exit status: 0 valid, 1 invalid or incomplete, 2 usage error',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        'data', nargs='?', metavar='DATA',
        help='the header as hex digits (spaces and colons allowed), or as '
        'text with \\r \\n \\xHH escapes; default: read stdin')
    source.add_argument('--hex', metavar='HEX', help='the header as hex')
    source.add_argument(
        '-f', '--file', metavar='PATH',
        help="read the header from a file ('-' for stdin)")
    parser.add_argument(
        '--input-format', choices=('auto', 'raw', 'hex'), default='auto',
        help='how to read a file or stdin: raw bytes, hex text, or guess '
        '(default)')
    parser.add_argument('--json', action='store_true',
                        help='print a JSON object instead of text')
    parser.add_argument(
        '--versions', choices=('1', '2', 'any'), default='any',
        help='the versions to accept (default: any)')
    parser.add_argument(
        '--max-length', type=int, default=MAX_V2_LENGTH, metavar='BYTES',
        help='the longest v2 header to accept (default: %(default)s, the '
        'most the protocol allows; the library defaults to 16384)')
    parser.set_defaults(run=run)


def _versions(choice: str) -> tuple[int, ...]:
    return (1, 2) if choice == 'any' else (int(choice),)


def _read(stream: BinaryIO) -> bytes:
    return stream.read()


def read_data(args: argparse.Namespace,
              stdin: Optional[BinaryIO] = None) -> bytes:
    """The bytes the command line names.

    Raises:
        ValueError: Hex that is not hex.
        OSError: The file cannot be read.

    """
    if args.hex is not None:
        return parse_hex(args.hex)
    if args.data is not None:
        text: str = args.data
        return parse_hex(text) if looks_like_hex(text) else unescape(text)
    if args.file is not None and args.file != '-':
        with open(args.file, 'rb') as stream:
            raw = stream.read()
    else:
        raw = _read(stdin if stdin is not None else sys.stdin.buffer)
    return decode_input(raw, args.input_format)


def run(args: argparse.Namespace) -> int:
    """Run ``decode``; return the exit status."""
    try:
        data = read_data(args)
    except (ValueError, OSError) as exc:
        print(f'proxyprotocol decode: error: {exc}', file=sys.stderr)
        return 2
    outcome = decode_bytes(data, versions=_versions(args.versions),
                           max_length=args.max_length)
    described = describe(data, outcome)
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        sys.stdout.write(render(described, data))
    return 0 if described['valid'] else 1
