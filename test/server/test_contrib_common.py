"""What the framework integrations share (:mod:`proxyprotocol.contrib`):
settings from environment variables and the socket view. No framework is
needed here."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from proxyprotocol import build_header
from proxyprotocol.acceptor import ConnectionInfo, HeaderAcceptor
from proxyprotocol.contrib import (ProxiedSocket, config_from_env,
                                   ssl_context_from_env)
from proxyprotocol.contrib._common import EVERYONE, two_tuple
from proxyprotocol.policy import DEFAULT_CONFIG, HeaderConfig, Policy
from proxyprotocol.sockaddr import result_from_sockaddrs
from support.certs import make_certificate


def test_config_from_empty_environment_is_the_base() -> None:
    assert config_from_env({}) is DEFAULT_CONFIG
    base = HeaderConfig(trusted=['10.0.0.0/8'])
    assert config_from_env({'UNRELATED': '1'}, base=base) is base


def test_config_from_environment() -> None:
    config = config_from_env({
        'PROXYPROTOCOL_TRUSTED': '10.0.0.0/8, 2001:db8::/32 unix',
        'PROXYPROTOCOL_TRUSTED_POLICY': 'optional',
        'PROXYPROTOCOL_UNTRUSTED_POLICY': 'IGNORE',
        'PROXYPROTOCOL_VERSIONS': '2',
        'PROXYPROTOCOL_TIMEOUT': '2.5',
        'PROXYPROTOCOL_MAX_LENGTH': '1024',
    })
    assert config == HeaderConfig(
        trusted=['10.0.0.0/8', '2001:db8::/32', 'unix'],
        trusted_policy=Policy.OPTIONAL, untrusted_policy=Policy.IGNORE,
        versions=(2,), timeout=2.5, max_length=1024)


def test_config_from_environment_trust_shorthands() -> None:
    everyone = config_from_env({'PROXYPROTOCOL_TRUSTED': '*'})
    assert everyone.trusted == HeaderConfig(trusted=EVERYONE).trusted
    assert everyone.is_trusted(('192.0.2.1', 1))
    assert everyone.is_trusted(('2001:db8::1', 1, 0, 0))
    nobody = config_from_env({'PROXYPROTOCOL_TRUSTED': ''})
    assert nobody.trusted == ()
    assert not nobody.is_trusted(('127.0.0.1', 1))
    # A custom prefix.
    assert config_from_env({'PP_VERSIONS': '1'}, prefix='PP_').versions == (1,)


@pytest.mark.parametrize('name, value', [
    ('TRUSTED', 'not-a-network'),
    ('TRUSTED', '10.0.0.1/8'),
    ('TRUSTED_POLICY', 'maybe'),
    ('VERSIONS', '3'),
    ('VERSIONS', 'two'),
    ('TIMEOUT', 'soon'),
    ('TIMEOUT', '-1'),
    ('MAX_LENGTH', '1.5'),
    ('MAX_LENGTH', '4'),
])
def test_config_from_environment_errors_name_the_variable(
        name: str, value: str) -> None:
    with pytest.raises(ValueError, match='PROXYPROTOCOL_') as caught:
        config_from_env({f'PROXYPROTOCOL_{name}': value})
    assert value in str(caught.value) or name in str(caught.value)


def test_ssl_context_from_environment(tmp_path: Path) -> None:
    assert ssl_context_from_env({}) is None
    certfile, keyfile = make_certificate(tmp_path)
    context = ssl_context_from_env({
        'PROXYPROTOCOL_SSL_CERTFILE': certfile,
        'PROXYPROTOCOL_SSL_KEYFILE': keyfile,
    }, alpn_protocols=['http/1.1'])
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    verifying = ssl_context_from_env({
        'PROXYPROTOCOL_SSL_CERTFILE': certfile,
        'PROXYPROTOCOL_SSL_KEYFILE': keyfile,
        'PROXYPROTOCOL_SSL_CA_CERTS': certfile,
    })
    assert verifying is not None
    assert verifying.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match='SSL_CERTFILE'):
        ssl_context_from_env({'PROXYPROTOCOL_SSL_KEYFILE': keyfile})
    with pytest.raises(OSError):
        ssl_context_from_env({
            'PROXYPROTOCOL_SSL_CERTFILE': str(tmp_path / 'missing.pem')})


def test_proxied_socket_reports_the_header() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), 5) as client:
            server, _ = listener.accept()
            with server:
                acceptor = HeaderAcceptor.for_socket(DEFAULT_CONFIG, server)
                acceptor.start()
                info = acceptor.feed(build_header(result_from_sockaddrs(
                    ('2001:db8::7', 4321), ('2001:db8::1', 443))))
                assert isinstance(info, ConnectionInfo)
                view = ProxiedSocket(server, info)
                assert view.getpeername() == ('2001:db8::7', 4321, 0, 0)
                assert view.getsockname() == ('2001:db8::1', 443, 0, 0)
                assert view.family == socket.AF_INET6
                assert view.type == socket.SOCK_STREAM
                assert view.proto == server.proto
                assert view.fileno() == server.fileno()
                view.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                assert view.getsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY) != 0
                assert view.info is info
                assert '2001:db8::7' in repr(view)
                assert client.getsockname() == server.getpeername()


def test_proxied_socket_without_addresses_is_the_real_socket() -> None:
    # A LOCAL header (a health check): the real addresses stand.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), 5) as client:
            server, _ = listener.accept()
            with server:
                acceptor = HeaderAcceptor.for_socket(DEFAULT_CONFIG, server)
                acceptor.start()
                info = acceptor.feed(build_header(result_from_sockaddrs(
                    None, None, proxied=False)))
                assert isinstance(info, ConnectionInfo)
                view = ProxiedSocket(server, info)
                assert view.getpeername() == client.getsockname()
                assert view.family == socket.AF_INET


def test_two_tuple() -> None:
    assert two_tuple(('::1', 80, 0, 0)) == ('::1', 80)
    assert two_tuple(('127.0.0.1', 80)) == ('127.0.0.1', 80)
    assert two_tuple('/run/app.sock') == '/run/app.sock'
    assert two_tuple(None) is None
