"""Throw-away certificates from ``trustme`` (skips the test when it is
not installed): PEM files for subprocess peers, or in-memory contexts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class CertFiles:
    """A throw-away CA, a server certificate for ``localhost`` (and the
    loopback addresses), and a client certificate, as PEM files.

    ``combined`` and ``client_combined`` hold the chain and the key in one
    file (as HAProxy and ``proxyprotocol send --tls-cert`` take them).

    """

    ca: Any
    ca_pem: Path
    server_pem: Path
    server_key: Path
    client_pem: Path
    client_key: Path
    combined: Path = field(default=Path())
    client_combined: Path = field(default=Path())

    def client_context(self, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if client_cert:
            ctx.load_cert_chain(str(self.client_pem), str(self.client_key))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_pem), str(self.server_key))
        return ctx


def make_cert_files(tmp_path: Path) -> CertFiles:
    """Write a fresh ``trustme`` CA and certificates under ``tmp_path``."""
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    server = ca.issue_cert('localhost', '127.0.0.1', '::1')
    client = ca.issue_cert('client.example', common_name='client.example')
    files = CertFiles(ca, tmp_path / 'ca.pem', tmp_path / 'server.pem',
                      tmp_path / 'server.key', tmp_path / 'client.pem',
                      tmp_path / 'client.key', tmp_path / 'server-all.pem',
                      tmp_path / 'client-all.pem')
    ca.cert_pem.write_to_path(str(files.ca_pem))
    for cert, pem, key, combined in (
            (server, files.server_pem, files.server_key, files.combined),
            (client, files.client_pem, files.client_key,
             files.client_combined)):
        with open(pem, 'wb') as file:
            for blob in cert.cert_chain_pems:
                file.write(blob.bytes())
        cert.private_key_pem.write_to_path(str(key))
        combined.write_bytes(pem.read_bytes() + key.read_bytes())
    return files


def make_certificate(tmp_path: Path) -> tuple[str, str]:
    """A server certificate for 127.0.0.1 / ::1 / localhost:
    ``(certfile, keyfile)``."""
    files = make_cert_files(tmp_path)
    return str(files.server_pem), str(files.server_key)


@dataclass
class Certs:
    """A throw-away CA, a server context and a client context."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    ca: Any


def make_certs(client_cert: bool = False) -> Certs:
    """TLS contexts from a fresh ``trustme`` CA (for ``localhost``), in
    memory; with ``client_cert`` the server requires a client
    certificate."""
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert('localhost').configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    if client_cert:
        server.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(server)
        ca.issue_cert('client@example.com').configure_cert(client)
    return Certs(server, client, ca)
