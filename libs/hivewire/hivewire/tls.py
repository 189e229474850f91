"""TLS between hosts: the core host's own small CA and server certificate, and what
clients trust.

On the core host, `HIVE_HOME/tls/` (0700) holds `ca.pem`, `ca.key` (0600), `server.pem`
and `server.key` (0600), made on first need: by `hive up` when its nats-server listens
beyond loopback, by the deployer when its join endpoint does. The server certificate
names every address and name the core is dialled at (`core_sans`: loopback, this
machine's names, the listen addresses, or every local address for a wildcard one, the
hosts of HIVE_JOIN_URL and HIVE_HOSTS_NATS_URLS, and HIVE_TLS_SANS); a later need that
adds a name reissues it under the same CA. Joining hosts pin the CA by its SHA-256
fingerprint (`hive host add` prints it) and keep a copy at the same path.

A NATS client trusts HIVE_NATS_CA, else `HIVE_HOME/tls/ca.pem` when present: nats-py
then upgrades to TLS when the server requires it, and talks plain text otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import os
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hivewire import config

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_DAYS = 30  # a server certificate this close to expiry is reissued on the next start
WILDCARD = ("0.0.0.0", "::", "")


class TlsError(Exception):
    """The certificate cannot be made (the CA's key is lost)."""


@dataclass(frozen=True)
class CoreCert:
    ca: Path
    cert: Path
    key: Path
    sha256: str  # the CA's fingerprint, what joining hosts pin


def tls_dir(home: Path) -> Path:
    return Path(home) / "tls"


def ca_path(home: Path) -> Path:
    return tls_dir(home) / "ca.pem"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the certificate's DER, lowercase hex."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """Accepts `AB:CD:...`, `sha256:abcd...` or plain hex."""
    t = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits): {text!r}")
    return t


def local_addresses() -> set[str]:
    """This machine's interface addresses (IPv4 by ioctl, global IPv6 from /proc): what a
    wildcard listener is reached at."""
    out: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue  # no IPv4 address
            out.add(socket.inet_ntoa(res[20:24]))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            addr = ipaddress.IPv6Address(int(line.split()[0], 16))
            if not addr.is_link_local:
                out.add(str(addr))
    return out


def _url_host(url: str) -> str:
    return urllib.parse.urlsplit(url if "//" in url else f"//{url}").hostname or ""


def core_sans(listen: Iterable[str] = (), env: Mapping[str, str] | None = None) -> set[str]:
    """Every name the core host is dialled at: loopback (its own services), this machine's
    names, `listen` hosts (all local addresses for a wildcard), the join endpoint's, the hosts of
    HIVE_JOIN_URL and HIVE_HOSTS_NATS_URLS, and HIVE_TLS_SANS."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    hosts = list(listen)
    join = config.JOIN_ADDR.get(env)
    if join:
        hosts.append(join.rpartition(":")[0].strip("[]"))
    for h in hosts:
        names |= local_addresses() if h in WILDCARD else {h}
    for url in (config.JOIN_URL.get(env), *config.HOSTS_NATS_URLS.get(env).split(",")):
        if url.strip():
            names.add(_url_host(url.strip()))
    names |= {n.strip() for n in config.TLS_SANS.get(env).split(",") if n.strip()}
    return {n for n in names if n}


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    """`hive up` and the deployer may both ensure the certificate: one at a time."""
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _new_ca(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Hive CA {socket.gethostname()}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(d / "ca.key", _key_pem(key))
    _write_private(d / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _server_ok(d: Path, ca: x509.Certificate, sans: set[str]) -> set[str] | None:
    """The names the current server certificate covers, or None when it must be reissued
    (missing, another CA's, expiring, or lacking one of `sans`)."""
    try:
        cert = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
        (d / "server.key").stat()
    except (OSError, ValueError):
        return None
    if cert.issuer != ca.subject or cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=RENEW_DAYS):
        return None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # another CA of the same name
        return None
    have = {str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    return have if {str(_san(n).value) for n in sans} <= have else None


def ensure(home: Path, sans: Iterable[str]) -> CoreCert:
    """The CA (made once) and a server certificate covering `sans` (and whatever the current
    one covers): reissued under the same CA when a name is missing or it nears expiry."""
    d = tls_dir(home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    want = set(sans)
    with _locked(d):
        ca_key: ec.EllipticCurvePrivateKey | None = None
        if not (d / "ca.pem").exists():
            ca, ca_key = _new_ca(d)
        else:  # never a new CA silently: joined hosts pin this one
            ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
            if (d / "ca.key").exists():
                key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                ca_key = key
        if _server_ok(d, ca, want) is None:
            if ca_key is None:
                raise TlsError(f"{d / 'ca.key'} is missing, so the server certificate cannot be reissued (it lacks "
                               f"one of {sorted(want)} or nears expiry): replace the CA (docs/operations.md, "
                               "'TLS between hosts')")
            old = set()
            with contextlib.suppress(OSError, ValueError, x509.ExtensionNotFound):
                cur = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
                old = {str(n.value) for n in cur.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
            _issue_server(d, ca, ca_key, sorted(want | old))
    return CoreCert(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key",
                    sha256=fingerprint((d / "ca.pem").read_bytes()))


def _issue_server(d: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, sans: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname())]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in sans]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(d / "server.key", _key_pem(key))
    _write_private(d / "server.pem", cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert: CoreCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def client_context(ca_file: Path) -> ssl.SSLContext:
    """Trusts `ca_file` alone (not the system's roots), names checked."""
    return ssl.create_default_context(cafile=str(ca_file))


def nats_ca(env: Mapping[str, str] | None = None) -> Path | None:
    """HIVE_NATS_CA, else HIVE_HOME/tls/ca.pem when present: what a NATS client trusts."""
    own = config.NATS_CA.get(env)
    if own:
        if not Path(own).is_file():  # a typo must not become "trust the system's roots"
            raise config.ConfigError(config.NATS_CA.name, own, "a CA certificate file (PEM)")
        return Path(own)
    p = ca_path(config.home(env))
    return p if p.exists() else None


def nats_tls_config(home: Path, cert: CoreCert, base: Path | None) -> Path:
    """`tls/nats-tls.conf`: `base` (the auth config, if any) plus a `tls {}` block for the client
    listener. nats-server resolves an include against the including file's directory."""
    lines = ["# Generated by `hive up`: its nats-server listens beyond loopback, so TLS is on."]
    if base is not None:
        lines.append(f'include "{os.path.relpath(base, tls_dir(home))}"')
    # The handshake timeout is generous: a loaded 2-core host must not drop a harness.
    lines += ["tls {", f'  cert_file: "{cert.cert}"', f'  key_file: "{cert.key}"', "  timeout: 5", "}", ""]
    path = tls_dir(home) / "nats-tls.conf"
    _write_private(path, "\n".join(lines).encode())
    return path
