"""The RDS CA bundle for ``sslmode=verify-full``: fetched once, cached under the TAPDB
config directory (mode 0600), and checked (parsable PEM certificates) before every use.

The fetch is injectable so that tests (and air-gapped installs, which can place the
file themselves or point ``sslrootcert`` at their own copy) never need the network.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Final

from tapdb_core.errors import ConfigurationError

RDS_CA_URL: Final = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
BUNDLE_NAME: Final = "rds-global-bundle.pem"

Fetch = Callable[[str], bytes]


class CaBundleError(ConfigurationError):
    """The CA bundle is missing, unreadable or not a set of certificates."""


def config_dir() -> Path:
    return Path(os.environ.get("TAPDB_CONFIG_DIR") or "~/.config/tapdb").expanduser()


def default_bundle_path() -> Path:
    return config_dir() / "certs" / BUNDLE_NAME


def check_bundle(data: bytes) -> int:
    """The number of CA certificates in ``data``; raises unless it is at least one and
    every certificate parses."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CaBundleError("the CA bundle is not PEM text") from None
    count = text.count("-----BEGIN CERTIFICATE-----")
    if count == 0:
        raise CaBundleError("the CA bundle holds no PEM certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except ssl.SSLError as exc:
        raise CaBundleError(f"the CA bundle does not parse: {exc.reason or exc}") from None
    loaded = context.cert_store_stats().get("x509_ca", 0) + context.cert_store_stats().get(
        "x509", 0
    )
    if loaded < 1:
        raise CaBundleError("the CA bundle holds no usable certificate")
    return count


def download(url: str) -> bytes:
    import urllib.request

    if not url.startswith("https://"):
        raise CaBundleError(f"refusing to fetch the CA bundle over a non-HTTPS URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - https only
            data: bytes = response.read(4 * 1024 * 1024)
    except OSError as exc:
        raise CaBundleError(
            f"cannot fetch the RDS CA bundle from {url} ({exc}); download it yourself and "
            "set sslrootcert in the environment's config to its path"
        ) from None
    return data


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_ca_bundle(
    path: Path | None = None, *, fetch: Fetch = download, url: str = RDS_CA_URL
) -> Path:
    """The path of a checked CA bundle: the cached file when it passes the check,
    else fetched (once) and cached. A given ``path`` that exists is only checked."""
    target = path or default_bundle_path()
    if target.exists():
        try:
            check_bundle(target.read_bytes())
            return target
        except CaBundleError:
            if path is not None:
                raise CaBundleError(f"{target}: not a usable CA bundle") from None
            # a damaged cache is replaced below
    elif path is not None and path != default_bundle_path():
        raise CaBundleError(f"CA bundle {target} does not exist")
    data = fetch(url)
    check_bundle(data)
    _write_private(target, data)
    return target
