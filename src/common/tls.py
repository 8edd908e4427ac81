"""gRPC TLS and mutual-TLS credentials from PEM files, with the files checked before use.

The aggregator serves TLS when given a certificate and key, and mutual TLS when also given a
client CA: it then requires and verifies a client certificate signed by that CA on every
connection. Nodes and clients trust a CA file and, for mutual TLS, present a client certificate
and key. gRPC's own errors for a bad file are late and vague (a handshake failure at the first
call), so every file is checked here first: it must exist, be a readable regular file, hold the
PEM block it should, and a private key must not be readable by group or others (as ssh refuses
such a key). Errors are `ConfigError`s naming the file, never showing its content.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Final

import grpc

from common.errors import ConfigError

# Certificates and keys are a few kilobytes; a chain of a dozen certificates is well below this.
MAX_PEM_BYTES: Final = 1 << 20
# A complete PEM block: its label, as long as a matching END line follows.
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[^-]+?-----END \1-----")


def server_credentials(
    cert: Path, key: Path, *, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials for a server; with `client_ca`, mutual TLS (client certificate required)."""
    chain = _read_pem(cert, "CERTIFICATE", what="certificate")
    private_key = _read_private_key(key)
    roots = None if client_ca is None else _read_pem(client_ca, "CERTIFICATE", what="client CA")
    return grpc.ssl_server_credentials(
        [(private_key, chain)],
        root_certificates=roots,
        require_client_auth=roots is not None,
    )


def channel_credentials(
    ca: Path, *, client_cert: Path | None = None, client_key: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials for a client trusting `ca`; with a client cert and key, for mutual TLS."""
    if (client_cert is None) != (client_key is None):
        raise ConfigError(
            "mutual TLS needs both a client certificate and its key (give both or neither)"
        )
    roots = _read_pem(ca, "CERTIFICATE", what="CA")
    chain = (
        None
        if client_cert is None
        else _read_pem(client_cert, "CERTIFICATE", what="client certificate")
    )
    private_key = None if client_key is None else _read_private_key(client_key)
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=private_key, certificate_chain=chain
    )


def _read_private_key(path: Path) -> bytes:
    info = _stat_regular(path, "private key")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{path}: private key mode is {stat.S_IMODE(info.st_mode):04o}; group and others "
            f"must have no access (chmod 600 {path})"
        )
    # Any PEM private key block: "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY".
    return _read_pem(path, "PRIVATE KEY", what="private key", info=info)


def _stat_regular(path: Path, what: str) -> os.stat_result:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what} file ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: the {what} must be a regular file")
    if info.st_size > MAX_PEM_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_PEM_BYTES} bytes; not a PEM {what}")
    return info


def _read_pem(path: Path, label: str, *, what: str, info: os.stat_result | None = None) -> bytes:
    if info is None:
        _stat_regular(path, what)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what} file ({error.strerror})") from None
    if not any(found.endswith(label.encode()) for found in _PEM_BLOCK.findall(data)):
        raise ConfigError(
            f"{path}: not a PEM {what} (expected a '-----BEGIN ...{label}-----' block)"
        )
    return data
