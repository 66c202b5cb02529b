"""Writes a self-signed development certificate (`python -m handlers.certs`)."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _subject_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def write_dev_certificate(
    cert_path: Path, key_path: Path, *, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 365
) -> None:
    """A P-256 key and a certificate for `hosts`, valid from now for `days`; the key file is 0600."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pokemon-certs", description=__doc__)
    parser.add_argument("--cert", type=Path, default=Path(os.environ.get("POKEMON_TLS_CERT", "certs/cert.pem")))
    parser.add_argument("--key", type=Path, default=Path(os.environ.get("POKEMON_TLS_KEY", "certs/key.pem")))
    parser.add_argument("--host", action="append", dest="hosts", help="a DNS name or IP (repeatable)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    if not args.force and (args.cert.exists() or args.key.exists()):
        print(f"pokemon-certs: {args.cert} or {args.key} already exists (use --force to replace)")
        return 1
    write_dev_certificate(args.cert, args.key, hosts=args.hosts or DEFAULT_HOSTS, days=args.days)
    print(f"pokemon-certs: wrote {args.cert} and {args.key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
