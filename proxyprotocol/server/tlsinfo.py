"""TLS facts for the PP2_TYPE_SSL, ALPN and AUTHORITY TLVs.

When ``proxyprotocol-server`` terminates TLS itself, the v2 header it sends
describes that TLS session (spec section 2.2.6): version, cipher, the client
certificate's common name and whether it was verified, and the signature and
key algorithms of the server's own certificate, named as HAProxy and OpenSSL
name them (``RSA-SHA256``, ``ecdsa-with-SHA256``; ``RSA2048``, ``EC256``).

The standard library gives certificates only as DER bytes (or as a dict, and
only once verified), so :func:`cert_summary` reads the three fields it needs
with a minimal DER walker, no third-party package.

"""

from __future__ import annotations

import ssl
from typing import Final, NamedTuple, Optional

from .headers import TLSFacts

__all__ = ['CertSummary', 'cert_summary', 'load_cert_summary',
           'record_sni', 'facts_from_ssl_object']

_SIG_ALGS: Final = {
    '1.2.840.113549.1.1.4': 'RSA-MD5',
    '1.2.840.113549.1.1.5': 'RSA-SHA1',
    '1.2.840.113549.1.1.14': 'RSA-SHA224',
    '1.2.840.113549.1.1.11': 'RSA-SHA256',
    '1.2.840.113549.1.1.12': 'RSA-SHA384',
    '1.2.840.113549.1.1.13': 'RSA-SHA512',
    '1.2.840.113549.1.1.10': 'RSASSA-PSS',
    '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
    '1.2.840.10045.4.3.1': 'ecdsa-with-SHA224',
    '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
    '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
    '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
    '1.3.101.112': 'ED25519',
    '1.3.101.113': 'ED448',
}
_RSA: Final = '1.2.840.113549.1.1.1'
_EC: Final = '1.2.840.10045.2.1'
_DSA: Final = '1.2.840.10040.4.1'
_CURVE_BITS: Final = {
    '1.2.840.10045.3.1.7': 256,   # prime256v1
    '1.3.132.0.34': 384,          # secp384r1
    '1.3.132.0.35': 521,          # secp521r1
    '1.3.132.0.10': 256,          # secp256k1
}
_CN: Final = '2.5.4.3'
_STRING_TAGS: Final = {0x0C: 'utf-8', 0x13: 'ascii', 0x16: 'ascii',
                       0x14: 'latin-1', 0x1E: 'utf-16-be', 0x1C: 'utf-32-be'}


class CertSummary(NamedTuple):
    """The fields of a certificate that the SSL TLV carries."""

    cn: Optional[str]
    sig_alg: Optional[str]
    key_alg: Optional[str]


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """``(tag, start of value, end of value)`` of the DER element at
    ``pos``; raises ValueError past the end."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError('unsupported DER length')
        length = int.from_bytes(der[pos:pos + count], 'big')
        pos += count
    end = pos + length
    if end > len(der):
        raise ValueError('DER element runs past the end')
    return tag, pos, end


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    while start < end:
        item = _tlv(der, start)
        items.append(item)
        start = item[2]
    return items


def _oid(value: bytes) -> str:
    first = value[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return '.'.join(str(p) for p in parts)


def _common_name(der: bytes, start: int, end: int) -> Optional[str]:
    cn = None
    for _, set_start, set_end in _children(der, start, end):
        for _, seq_start, seq_end in _children(der, set_start, set_end):
            (_, o_start, o_end), (tag, v_start, v_end) = \
                _children(der, seq_start, seq_end)[:2]
            if _oid(der[o_start:o_end]) == _CN and tag in _STRING_TAGS:
                cn = der[v_start:v_end].decode(_STRING_TAGS[tag], 'replace')
    return cn


def _key_alg(der: bytes, start: int, end: int) -> Optional[str]:
    (_, alg_start, alg_end), (_, key_start, key_end) = \
        _children(der, start, end)[:2]
    alg = _children(der, alg_start, alg_end)
    oid = _oid(der[alg[0][1]:alg[0][2]])
    if oid == _RSA:
        # BIT STRING: one byte of unused bits, then RSAPublicKey.
        _, seq_start, seq_end = _tlv(der, key_start + 1)
        _, mod_start, mod_end = _children(der, seq_start, seq_end)[0]
        modulus = int.from_bytes(der[mod_start:mod_end], 'big')
        return f'RSA{modulus.bit_length()}'
    if oid == _EC and len(alg) > 1:
        bits = _CURVE_BITS.get(_oid(der[alg[1][1]:alg[1][2]]))
        return f'EC{bits}' if bits else 'EC'
    if oid == _DSA:
        return 'DSA'
    return _SIG_ALGS.get(oid)


def cert_summary(der: bytes) -> CertSummary:
    """The subject common name, signature algorithm and key algorithm of a
    DER certificate; fields that cannot be read are None."""
    try:
        _, cert_start, cert_end = _tlv(der, 0)
        tbs, sig_alg = _children(der, cert_start, cert_end)[:2]
        fields = _children(der, tbs[1], tbs[2])
        if fields and fields[0][0] == 0xA0:    # [0] version
            fields = fields[1:]
        # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
        subject, spki = fields[4], fields[5]
        alg_oid = _children(der, sig_alg[1], sig_alg[2])[0]
        sig = _SIG_ALGS.get(_oid(der[alg_oid[1]:alg_oid[2]]))
    except (ValueError, IndexError):
        return CertSummary(None, None, None)
    try:
        cn = _common_name(der, subject[1], subject[2])
    except (ValueError, IndexError):
        cn = None
    try:
        key = _key_alg(der, spki[1], spki[2])
    except (ValueError, IndexError):
        key = None
    return CertSummary(cn, sig, key)


def load_cert_summary(path: str) -> CertSummary:
    """:func:`cert_summary` of the first certificate in a PEM file."""
    with open(path, encoding='ascii', errors='replace') as file:
        text = file.read()
    begin = text.find('-----BEGIN CERTIFICATE-----')
    end = text.find('-----END CERTIFICATE-----', begin)
    if begin < 0 or end < 0:
        return CertSummary(None, None, None)
    pem = text[begin:end + len('-----END CERTIFICATE-----')]
    return cert_summary(ssl.PEM_cert_to_DER_cert(pem))


def _sni_callback(ssl_object: ssl.SSLObject, server_name: Optional[str],
                  context: ssl.SSLContext) -> None:
    if server_name is not None:
        try:
            setattr(ssl_object, '_pp_server_name', server_name)
        except AttributeError:
            pass


def record_sni(context: ssl.SSLContext) -> None:
    """Make a server context remember the name each client asked for (SNI),
    for :func:`facts_from_ssl_object`."""
    context.sni_callback = _sni_callback


def facts_from_ssl_object(ssl_object: ssl.SSLObject,
                          own: CertSummary) -> TLSFacts:
    """The facts of a completed server-side handshake."""
    cipher = ssl_object.cipher()
    der = ssl_object.getpeercert(binary_form=True)
    cn = cert_summary(der).cn if der else None
    verified = bool(der) and ssl_object.context.verify_mode != ssl.CERT_NONE
    return TLSFacts(
        version=ssl_object.version(), cipher=cipher[0] if cipher else None,
        alpn=ssl_object.selected_alpn_protocol(),
        sni=getattr(ssl_object, '_pp_server_name', None),
        client_cert=bool(der), verified=verified, cn=cn,
        sig_alg=own.sig_alg, key_alg=own.key_alg)
