"""Choosing v1 or v2 from the first bytes, and nothing else (spec 2.2, 5)."""

from __future__ import annotations

from typing import Any

import pytest

from proxyprotocol import (HeaderParser, NeedMore, ParsedHeader,
                           ProxyProtocolSyntaxError, parse_header)
from proxyprotocol.detect import unpack_any
from vectors.golden import SIG, VALID_V1, VALID_V2, Valid


@pytest.mark.parametrize('first', range(256))
def test_first_byte(first: int) -> None:
    data = bytes([first])
    if first in (0x0D, 0x50):  # "\r" (v2) or "P" (v1)
        assert parse_header(data) == NeedMore(7)
    else:
        with pytest.raises(ProxyProtocolSyntaxError) as info:
            parse_header(data)
        assert info.value.field == 'signature'
        assert info.value.offset == 0


def test_nothing_yet() -> None:
    assert parse_header(b'') == NeedMore(8)
    assert parse_header(memoryview(b'')) == NeedMore(8)
    assert unpack_any(b'') == NeedMore(8)


@pytest.mark.parametrize('vector', VALID_V1 + VALID_V2, ids=lambda v: v.name)
def test_detects_the_version(vector: Valid) -> None:
    parsed = parse_header(vector.wire)
    assert isinstance(parsed, ParsedHeader)
    assert parsed.version == (1 if vector.wire.startswith(b'P') else 2)
    assert parsed.result == vector.result
    only = parse_header(vector.wire, versions=(parsed.version,))
    assert only == parsed
    other = 2 if parsed.version == 1 else 1
    with pytest.raises(ProxyProtocolSyntaxError):
        parse_header(vector.wire, versions=(other,))


@pytest.mark.parametrize('other', [
    b'GET / HTTP/1.1\r\n', b'POST /', b'\x16\x03\x01\x02\x00\x01',
    b'SSH-2.0-OpenSSH\r\n', b'EHLO example\r\n', b'\r\n\r\n\r\n', b'\r\n\r\nHTTP',
    b'\x00' * 16, b'PRI * HTTP/2.0', b'proxy tcp4'])
def test_other_protocols_rejected_early(other: bytes) -> None:
    # Some prefix of each is rejected; no header is ever found in it.
    for end in range(1, len(other) + 1):
        try:
            outcome = parse_header(other[:end])
        except ProxyProtocolSyntaxError as exc:
            assert exc.field in ('signature', 'v1.signature', 'v2.signature')
            assert end <= 8
            break
        assert isinstance(outcome, NeedMore)
    else:
        raise AssertionError(f'{other!r} was never rejected')


@pytest.mark.parametrize('end', range(8, 16))
def test_v2_after_detection_wants_the_fixed_part(end: int) -> None:
    assert parse_header(SIG[:end] if end <= 12 else
                        SIG + b'\x21\x11\x00'[:end - 12]) == NeedMore(16 - end)


def test_v1_seventh_byte_checked() -> None:
    # "PROXY " and one byte is not yet 8, but may already be wrong.
    assert parse_header(b'PROXY T') == NeedMore(1)
    assert parse_header(b'PROXY U') == NeedMore(1)
    for bad in (b'PROXY  ', b'PROXY t', b'PROXY \r', b'PROXY \n'):
        with pytest.raises(ProxyProtocolSyntaxError):
            parse_header(bad)


def test_restricted_versions_reject_at_first_byte() -> None:
    with pytest.raises(ProxyProtocolSyntaxError):
        parse_header(b'P', versions=(2,))
    with pytest.raises(ProxyProtocolSyntaxError):
        parse_header(b'\r', versions=[1])
    assert parse_header(b'P', versions={1}) == NeedMore(7)
    assert parse_header(b'\r', versions=(2,)) == NeedMore(7)
    assert unpack_any(b'\r\n', v1=False) == NeedMore(6)
    with pytest.raises(ProxyProtocolSyntaxError):
        unpack_any(b'\r', v2=False)


@pytest.mark.parametrize('versions', [(), (3,), (1, 3), (0, 1, 2), ('1',)])
def test_invalid_versions_argument(versions: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_header(b'PROXY UNKNOWN\r\n', versions=versions)
    assert 'versions' in str(info.value)
    with pytest.raises(ValueError):
        HeaderParser(versions=versions)


def test_version_order_does_not_matter() -> None:
    line = b'PROXY UNKNOWN\r\n'
    assert parse_header(line, versions=(2, 1)) == parse_header(line)
    assert parse_header(line, versions=[1, 2]) == parse_header(line)
