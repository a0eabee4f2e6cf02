"""SocketInfo: the merged 0.4 / 0.11 connection information."""

from __future__ import annotations

import socket
import ssl
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Iterator, Optional

import pytest

from proxyprotocol.result import (ProxyResultIPv4, ProxyResultIPv6,
                                  ProxyResultLocal, ProxyResultUnix,
                                  ProxyResultUnknown)
from proxyprotocol.sock import SocketInfo, SocketInfoLocal, SocketInfoProxy
from proxyprotocol.socket import SocketInfo as ReadmeSocketInfo
from proxyprotocol.tlv import (ProxyProtocolExtTLV, ProxyProtocolSSLTLV,
                               ProxyProtocolTLV)


class Transport:
    """A transport's ``get_extra_info``, backed by a dict."""

    def __init__(self, **extra: Any) -> None:
        self.extra = extra

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


@pytest.fixture
def tcp6() -> Iterator[socket.socket]:
    if not socket.has_ipv6:
        pytest.skip('no IPv6')
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        yield sock


@pytest.fixture
def tcp4() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        yield sock


PROXIED = ProxyResultIPv6((IPv6Address('::1'), 10),
                          (IPv6Address('::ffff:1.2.3.4'), 20),
                          protocol=socket.SOCK_STREAM)


def test_readme_path_is_the_same_class() -> None:
    assert ReadmeSocketInfo is SocketInfo


def test_constructor_dispatch() -> None:
    transport = Transport()
    local = SocketInfo(transport)
    assert type(local) is SocketInfoLocal
    assert isinstance(local.pp_result, ProxyResultLocal)
    proxy = SocketInfo(transport, PROXIED)
    assert type(proxy) is SocketInfoProxy and proxy.pp_result is PROXIED
    unknown = SocketInfo(transport, result=ProxyResultUnknown())
    assert type(unknown) is SocketInfoProxy
    assert type(SocketInfo(transport, ProxyResultLocal())) is SocketInfoLocal
    with pytest.raises(TypeError):
        SocketInfoProxy(transport)  # type: ignore[call-arg]


def test_get_is_dual_mode() -> None:
    transport = Transport(key='value')
    info = SocketInfo.get(transport, PROXIED, unique_id=b'u', dnsbl='d')
    assert type(info) is SocketInfoProxy
    assert info.unique_id == b'u' and info.dnsbl == 'd'  # header has none
    assert type(SocketInfoLocal.get(transport, None)) is SocketInfoLocal
    assert type(SocketInfoProxy.get(transport, ProxyResultLocal())) \
        is SocketInfoLocal
    # On an instance: the 0.4 mapping-style get().
    assert info.get('key') == 'value'
    assert info.get('missing') is None
    assert info.get('missing', 3) == 3
    assert info['key'] == 'value'
    with pytest.raises(KeyError):
        info['missing']
    assert 'key' in info and 'missing' not in info
    assert not info.__contains__(42)


def test_header_values_win() -> None:
    tlv = ProxyProtocolTLV(unique_id=b'hdr', ext=ProxyProtocolExtTLV(
        dnsbl='listed', compression='zlib', secret_bits=256,
        peercert={'subject': 'x'}), ssl=ProxyProtocolSSLTLV(
            has_ssl=True, cipher='TLS_AES_256_GCM_SHA384',
            version='TLSv1.3'))
    result = ProxyResultIPv4((IPv4Address('1.2.3.4'), 5),
                             (IPv4Address('5.6.7.8'), 443), tlv=tlv)
    info = SocketInfo.get(Transport(peercert={'from': 'transport'}),
                          result, unique_id=b'mine', dnsbl='mine')
    assert info.unique_id == b'hdr' and info.dnsbl == 'listed'
    assert info.compression == 'zlib'
    assert info.cipher == ('TLS_AES_256_GCM_SHA384', 'TLSv1.3', 256)
    assert info.peercert == {'subject': 'x'}
    # 0.4 objects took the certificate from the transport.
    assert SocketInfo(Transport(peercert={'from': 'transport'}),
                      result).peercert == {'from': 'transport'}
    no_ssl = SocketInfo.get(Transport(), PROXIED)
    assert no_ssl.cipher is None and no_ssl.compression is None


def test_proxied_addresses() -> None:
    info = SocketInfo.get(Transport(peername=('9.9.9.9', 1)), PROXIED)
    assert info.peername == ('::1', 10, 0, 0)
    assert info.family == socket.AF_INET6
    assert info.protocol == socket.SOCK_STREAM
    assert info.peername_ip == IPv6Address('::1')
    assert info.sockname_ip == IPv4Address('1.2.3.4')  # mapped, unwrapped
    assert info.sockname_port == 20 and info.peername_port == 10
    assert info.peername_str == '[::1]:10'
    assert info.sockname_str == '[1.2.3.4]:20'
    assert info.from_localhost


def test_unix_and_unknown_results() -> None:
    unix = SocketInfo.get(Transport(), ProxyResultUnix('/a', '/b'))
    assert unix.peername_str == '/a' and unix.sockname_str == '/b'
    assert unix.peername_ip is None and unix.peername_port is None
    assert unix.from_localhost and unix.family == socket.AF_UNIX
    assert repr(unix) == "<SocketInfoProxy peername='/a' sockname='/b'>"
    unknown = SocketInfo.get(Transport(), ProxyResultUnknown(EOFError()))
    assert unknown.peername is None and unknown.peername_str is None
    assert not unknown.from_localhost
    assert repr(unknown) == '<SocketInfoProxy exc=EOFError()>'


def test_local_from_a_real_socket(tcp6: socket.socket) -> None:
    transport = Transport(socket=tcp6, peername=('::2', 20, 0, 0),
                          sockname=('::1', 10, 0, 0))
    info = SocketInfoLocal(transport, unique_id=b'id', dnsbl='x')
    assert info.family == socket.AF_INET6
    assert info.protocol == socket.SOCK_STREAM  # 0.11: SocketKind(type)
    assert info.unique_id == b'id' and info.dnsbl == 'x'
    assert info.socket is tcp6
    assert repr(info) == ("<SocketInfoLocal peername='[::2]:20' "
                          "sockname='[::1]:10'>")
    assert str(info) == repr(info)
    legacy = SocketInfo(transport)
    assert legacy.protocol == tcp6.proto  # 0.4: the raw proto number
    assert str(legacy) == ("<SocketInfo peername='[::2]:20' "
                           "sockname='[::1]:10' peercert=None>")
    assert repr(legacy) == repr(info)
    assert not legacy.from_localhost


def test_local_tls_entries(tcp4: socket.socket) -> None:
    context = ssl.create_default_context()
    transport = Transport(socket=tcp4, peername=('127.0.0.1', 1),
                          sslcontext=context, compression=None,
                          cipher=('C', 'TLSv1.3', 128),
                          peercert={'subject': ()})
    info = SocketInfo(transport)
    assert info.ssl_context is context
    assert info.cipher == ('C', 'TLSv1.3', 128)
    assert info.peercert == {'subject': ()}
    assert info.compression is None
    assert info.from_localhost and info.peername_str == '[127.0.0.1]:1'


def test_family_without_a_socket() -> None:
    def family(peername: Any) -> Optional[int]:
        return SocketInfoLocal(Transport(peername=peername)).family
    assert family(('1.2.3.4', 1)) == socket.AF_INET
    assert family(('::1', 1, 0, 0)) == socket.AF_INET6
    assert family('/run/x.sock') == socket.AF_UNIX
    assert family(None) == socket.AF_UNSPEC
    info = SocketInfoLocal(Transport(peername='/run/x.sock',
                                     sockname=b'\0abstract'))
    assert info.from_localhost and info.sockname_str == '\0abstract'
    assert info.protocol is None  # no socket to ask
    assert SocketInfoLocal(Transport()).peername_str is None


def test_scoped_ipv6_peer(tcp6: socket.socket) -> None:
    info = SocketInfoLocal(Transport(socket=tcp6,
                                     peername=('fe80::1%lo', 5, 0, 1)))
    assert info.peername_ip == IPv6Address('fe80::1')
    assert info.peername_port == 5
