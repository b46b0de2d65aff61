"""A throwaway certificate authority for TLS tests, made with the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA (``<name>.pem`` and ``<name>.key``); returns the certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=driftline {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return directory / f"{name}.pem"


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a broker certificate for 127.0.0.1 signed by it, the broker's PEM keystore
    (unencrypted PKCS#8 key + certificate, as Kafka's ``ssl.keystore.type=PEM`` reads it),
    and a second CA that signed nothing (a client trusting only it must refuse the broker).
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    (directory / "broker.ext").write_text(EXT)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key",
             "-out", "broker.csr", "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", "broker.pem",
             "-extfile", "broker.ext", cwd=directory)
    keystore = directory / "broker-keystore.pem"
    keystore.write_text((directory / "broker.key").read_text()
                        + (directory / "broker.pem").read_text())
    keystore.chmod(0o600)
    return {"ca": ca, "other_ca": other, "keystore": keystore}
