"""``proxyprotocol send`` and ``listen`` against a real HAProxy.

* ``send`` to an HAProxy frontend with ``accept-proxy``: HAProxy must report
  the crafted source as the client (v1, v2 with TLVs and CRC32C, IPv6).
* ``listen`` behind HAProxy's ``send-proxy-v2`` with ``proxy-v2-options``:
  a TLS frontend (certificates from trustme, a client certificate) makes
  HAProxy send the SSL TLV and its sub-TLVs, AUTHORITY (the SNI), UNIQUE_ID
  and CRC32C; and ``send-proxy`` sends v1.

HAProxy runs in the foreground (``-db``) with a generated configuration in a
temporary directory. Its listening sockets are created here on ephemeral
loopback ports and inherited (``bind fd@N``), so there is no port race and
no wait for readiness. It is stopped by its PID.

"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from support.certs import make_cert_files
from support.haproxy import HAProxy, needs_haproxy
from support.net import listening_socket
from support.procs import pump_lines, stop_process

pytestmark = [pytest.mark.timeout(180), needs_haproxy]

COMMAND = [sys.executable, '-m', 'proxyprotocol.cli']
WAIT = 30.0


def send(port: int, *args: str, data: bytes = b''
         ) -> subprocess.CompletedProcess[bytes]:
    """Run ``proxyprotocol send`` to 127.0.0.1:``port``."""
    return subprocess.run([*COMMAND, 'send', *args, f'127.0.0.1:{port}'],
                          input=data, capture_output=True, timeout=WAIT,
                          check=False)


HTTP_CONFIG = """
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe_http
    bind fd@{http} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port] %[dst]:%[dst_port]"
"""  # noqa: E501


@pytest.fixture
def http_haproxy(tmp_path: Path) -> Iterator[tuple[HAProxy, int]]:
    sock, port = listening_socket()
    haproxy = HAProxy(tmp_path, HTTP_CONFIG, {'http': sock})
    try:
        yield haproxy, port
    finally:
        haproxy.stop()


REQUEST = b'GET / HTTP/1.0\r\nHost: test\r\n\r\n'


@pytest.mark.parametrize('args, expected', [
    (['-1', '-s', '192.0.2.7:4242', '-d', '198.51.100.1:80'],
     b'192.0.2.7:4242 198.51.100.1:80'),
    (['-2', '-s', '192.0.2.8:4343', '-d', '198.51.100.1:8080'],
     b'192.0.2.8:4343 198.51.100.1:8080'),
    (['-s', '[2001:db8::7]:5555', '-d', '[2001:db8::1]:443',
      '--alpn', 'http/1.1', '--authority', 'www.example', '--unique-id',
      'id-1', '--ssl-version', 'TLSv1.3', '--gcp-psc-id', '5',
      '--tlv', '0xF2=00', '--noop', '4', '--crc32c'],
     b'2001:db8::7:5555 2001:db8::1:443'),
])
def test_send_to_accept_proxy(http_haproxy: tuple[HAProxy, int],
                              args: list[str], expected: bytes) -> None:
    haproxy, port = http_haproxy
    done = send(port, *args, data=REQUEST)
    assert done.returncode == 0, (done.stderr, haproxy.log())
    assert done.stdout.startswith(b'HTTP/1.1 200'), \
        (done.stdout, haproxy.log())
    assert done.stdout.endswith(b'\r\n\r\n' + expected)


def test_send_bad_crc_is_rejected(http_haproxy: tuple[HAProxy, int]
                                  ) -> None:
    haproxy, port = http_haproxy
    dry = subprocess.run(
        [*COMMAND, 'send', '--dry-run', '-s', '192.0.2.7:1', '-d',
         '192.0.2.1:2', '--crc32c'], capture_output=True, timeout=WAIT,
        check=True)
    header = bytearray.fromhex(dry.stdout.decode().strip())
    header[-1] ^= 0x01
    done = send(port, '--raw-header', header.hex(), data=REQUEST)
    # HAProxy drops the connection without an answer (closed or reset,
    # depending on whether the request had arrived).
    assert done.stdout == b'', haproxy.log()
    assert done.returncode == 0 or b'reset by peer' in done.stderr, \
        done.stderr
    # The same header with the right checksum is accepted.
    header[-1] ^= 0x01
    done = send(port, '--raw-header', header.hex(), data=REQUEST)
    assert done.stdout.endswith(b'192.0.2.7:1 192.0.2.1:2'), done.stdout


class Listen:
    """``proxyprotocol listen --json`` in the background."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [*COMMAND, 'listen', '--json', *args, '127.0.0.1:0'],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.out = pump_lines(self.popen.stdout)
        line = self.popen.stderr.readline().decode()
        assert line.startswith('listening on 127.0.0.1:'), line
        self.port = int(line.rsplit(':', 1)[1])

    def events(self, wanted: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next event named ``wanted`` (bounded)."""
        for _ in range(100):
            line = self.out.get(timeout=timeout)
            assert line is not None, 'listen ended'
            event: dict[str, Any] = json.loads(line)
            if event['event'] == wanted:
                return event
        raise AssertionError(f'no {wanted} event')

    def stop(self) -> None:
        """Stop by PID."""
        stop_process(self.popen, timeout=WAIT)


PROXY_CONFIG = """
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe_tls
    bind fd@{tls} accept-proxy ssl crt {crt} ca-file {ca} verify optional
    unique-id-format %ci:%cp
    default_backend be_v2
backend be_v2
    server listen 127.0.0.1:{listen} send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id
frontend fe_v1
    bind fd@{plain}
    default_backend be_v1
backend be_v1
    server listen 127.0.0.1:{listen} send-proxy
"""  # noqa: E501


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    files = make_cert_files(tmp_path)
    return {'ca': str(files.ca_pem), 'server': str(files.combined),
            'client': str(files.client_combined)}


def test_listen_behind_send_proxy_v2(tmp_path: Path,
                                     pki: dict[str, str]) -> None:
    listen = Listen('--echo')
    tls, tls_port = listening_socket()
    plain, plain_port = listening_socket()
    config = PROXY_CONFIG.replace('{crt}', pki['server']) \
        .replace('{ca}', pki['ca']).replace('{listen}', str(listen.port))
    haproxy = HAProxy(tmp_path, config, {'tls': tls, 'plain': plain})
    try:
        # send -> HAProxy: a crafted source, then TLS with a client
        # certificate; HAProxy -> listen: v2 with the TLVs it knows.
        done = send(tls_port, '-s', '192.0.2.44:4444', '-d',
                    '198.51.100.4:443', '--tls', '--tls-ca', pki['ca'],
                    '--tls-sni', 'localhost', '--tls-cert', pki['client'],
                    data=b'through haproxy')
        assert done.returncode == 0, (done.stderr, haproxy.log())
        assert done.stdout == b'through haproxy'
        event = listen.events('header')
        assert event['valid'] is True, event
        header = event['header']
        assert header['version'] == 2
        assert header['command'] == 'PROXY'
        assert header['result']['source'] == {'address': '192.0.2.44',
                                              'port': 4444}
        assert header['result']['destination'] == {'address': '198.51.100.4',
                                                   'port': 443}
        tlvs = {t['name']: t for t in header['tlvs']}
        assert tlvs['AUTHORITY']['text'] == 'localhost'
        assert tlvs['UNIQUE_ID']['text'] == '192.0.2.44:4444'
        assert header['crc32c']['valid'] is True
        ssl_tlv = tlvs['SSL']
        assert ssl_tlv['client_flags'][0] == 'SSL'
        assert 'CERT_CONN' in ssl_tlv['client_flags']
        assert ssl_tlv['verified'] is True
        subs = {s['name']: s.get('text') for s in ssl_tlv['sub_tlvs']}
        assert subs['SSL_VERSION'].startswith('TLSv1.')
        assert subs['SSL_CN'] == 'client.example'
        assert subs['SSL_CIPHER']
        assert subs['SSL_SIG_ALG']
        assert subs['SSL_KEY_ALG']

        # A plain frontend and send-proxy: v1 with the real addresses.
        done = send(plain_port, '--raw-header', '', data=b'v1 please')
        assert done.returncode == 0, (done.stderr, haproxy.log())
        assert done.stdout == b'v1 please'
        event = listen.events('header')
        assert event['header']['version'] == 1, event
        assert event['header']['family'] == 'TCP4'
        assert event['header']['result']['destination'] == {
            'address': '127.0.0.1', 'port': plain_port}
    finally:
        haproxy.stop()
        listen.stop()
