"""``tapdb ui start|stop|status|logs|restart [ENV]``: the admin web UI as a
background process, one per environment.

Pid, log, session secret and certificate live in ``$TAPDB_UI_DIR`` (default
``~/.config/tapdb/ui``), under a folder per environment. HTTPS is the default:
a ``mkcert`` certificate when ``mkcert`` is installed, else a self-signed one
made with ``cryptography`` on first start (key mode 0600). The pid file also
records the process start time, so a recycled pid is reported as stale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import attrs

from tapdb_core.cli import cognito, common
from tapdb_core.cli.parsing import Subparsers, group, leaf
from tapdb_core.errors import TapdbError

DEFAULT_PORT = 8911


class UiError(TapdbError):
    """The UI process could not be started, stopped or found."""


def ui_dir(env: str) -> Path:
    base = os.environ.get("TAPDB_UI_DIR")
    root = Path(base).expanduser() if base else Path("~/.config/tapdb/ui").expanduser()
    path = root / env
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@attrs.frozen
class PidRecord:
    pid: int
    started: str
    url: str


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "?"
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def _read_pid(path: Path) -> PidRecord | None:
    try:
        pid, started, url = path.read_text().split("\n")[:3]
        return PidRecord(int(pid), started, url)
    except (OSError, ValueError):
        return None


def state_of(env: str) -> tuple[str, PidRecord | None]:
    """``running``, ``stale`` (a pid file whose process is gone or another) or ``stopped``."""
    rec = _read_pid(ui_dir(env) / "ui.pid")
    if rec is None:
        return "stopped", None
    now = _start_time(rec.pid)
    if now is None or (now != "?" and rec.started != "?" and now != rec.started):
        return "stale", rec
    return "running", rec


def _secret(env: str) -> str:
    path = ui_dir(env) / "session.secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def certificate(env: str, host: str) -> tuple[Path, Path]:
    """(cert, key) for HTTPS: existing files, else mkcert, else self-signed."""
    directory = ui_dir(env)
    cert, key = directory / "localhost.crt", directory / "localhost.key"
    if cert.exists() and key.exists():
        return cert, key
    names = sorted({"localhost", "127.0.0.1", "::1", host})
    mkcert = shutil.which("mkcert")
    if mkcert:
        subprocess.run(
            [mkcert, "-cert-file", str(cert), "-key-file", str(key), *names],
            check=True,
            capture_output=True,
        )
        key.chmod(0o600)
        return cert, key
    _self_signed(cert, key, names)
    return cert, key


def _self_signed(cert: Path, key: Path, names: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tapdb admin (localhost)")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _env_name(args: argparse.Namespace) -> str:
    return str(args.env or args.active_env or os.environ.get("TAPDB_ENV") or "dev")


def cmd_start(args: argparse.Namespace) -> int:
    env = _env_name(args)
    state, rec = state_of(env)
    if state == "running" and rec is not None:
        raise UiError(f"the UI of {env} is already running (pid {rec.pid}, {rec.url})")
    target = common.resolve_target(args, env)
    url = target.with_database(target.database).render_as_string(hide_password=False)
    scheme = "http" if args.http else "https"
    command = [
        sys.executable,
        "-m",
        "tapdb_core.admin.serve",
        "--env",
        env,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    child_env = dict(os.environ)
    child_env["TAPDB_ADMIN_DATABASE_URL"] = url
    child_env.update(cognito.ui_environment(env))  # a bound pool switches login to Cognito
    if not child_env.get("TAPDB_SESSION_SECRET") and env not in ("prod", "production"):
        child_env["TAPDB_SESSION_SECRET"] = _secret(env)
    if not args.http:
        cert, key = certificate(env, args.host)
        command += ["--certfile", str(cert), "--keyfile", str(key)]
        child_env["TAPDB_ADMIN_HTTPS"] = "true"
    shown = (
        f"{scheme}://{'localhost' if args.host in ('127.0.0.1', '::1') else args.host}:{args.port}/"
    )
    if args.foreground:
        common.out(f"tapdb UI for {env} at {shown} (Ctrl-C stops it)")
        return subprocess.call(command, env=child_env)
    directory = ui_dir(env)
    log = open(directory / "ui.log", "ab")
    proc = subprocess.Popen(
        command, env=child_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    started = _start_time(proc.pid) or "?"
    (directory / "ui.pid").write_text(f"{proc.pid}\n{started}\n{shown}\n")
    probe = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
    if not _wait_listening(probe, args.port, proc, args.wait):
        tail = _tail(directory / "ui.log", 15)
        if proc.poll() is None:
            proc.terminate()
        (directory / "ui.pid").unlink(missing_ok=True)
        raise UiError(f"the UI did not start; end of {directory / 'ui.log'}:\n{tail}")
    common.out(f"tapdb UI for {env} started (pid {proc.pid}) at {shown}")
    common.out(f"log: {directory / 'ui.log'}")
    return 0


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cmd_stop(args: argparse.Namespace) -> int:
    env = _env_name(args)
    state, rec = state_of(env)
    pid_file = ui_dir(env) / "ui.pid"
    if state != "running" or rec is None:
        pid_file.unlink(missing_ok=True)
        common.out(
            f"the UI of {env} is not running"
            + (" (stale pid file removed)" if state == "stale" else "")
        )
        return 0
    os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and _start_time(rec.pid) == rec.started:
        time.sleep(0.2)
    if _start_time(rec.pid) == rec.started:
        os.kill(rec.pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    common.out(f"the UI of {env} stopped (pid {rec.pid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    env = _env_name(args)
    state, rec = state_of(env)
    if args.json:
        common.print_json(
            {
                "env": env,
                "state": state,
                "pid": rec.pid if rec else None,
                "url": rec.url if rec else None,
            }
        )
    elif state == "running" and rec is not None:
        common.out(f"running: pid {rec.pid}, {rec.url}")
    elif state == "stale" and rec is not None:
        common.out(f"stale: pid file names {rec.pid}, which is no longer the UI (run start again)")
    else:
        common.out("stopped")
    return 0 if state == "running" else 1


def cmd_logs(args: argparse.Namespace) -> int:
    path = ui_dir(_env_name(args)) / "ui.log"
    if not path.exists():
        raise UiError(f"no log yet: {path}")
    common.out(_tail(path, args.lines))
    if args.follow:
        with path.open(errors="replace") as f:
            f.seek(0, os.SEEK_END)
            while True:
                line = f.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    cmd_stop(args)
    return cmd_start(args)


def _env_positional(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "env", nargs="?", metavar="ENV", help="environment (default: --env, $TAPDB_ENV, dev)"
    )


def _start_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--http", action="store_true", help="plain HTTP (only behind a TLS proxy)")
    p.add_argument("--foreground", action="store_true", help="run in this terminal")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the port")


def configure(sub: Subparsers) -> None:
    ui = group(sub, "ui", "the admin web UI (needs the 'admin' extra)")
    p = leaf(
        ui,
        "start",
        "start the UI of an environment (HTTPS, background)",
        cmd_start,
        json_flag=False,
    )
    _env_positional(p)
    _start_options(p)
    p = leaf(ui, "stop", "stop the UI of an environment", cmd_stop, json_flag=False)
    _env_positional(p)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    p = leaf(ui, "status", "running, stale or stopped (exit 0 only when running)", cmd_status)
    _env_positional(p)
    p = leaf(ui, "logs", "the UI's log", cmd_logs, json_flag=False)
    _env_positional(p)
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    p.add_argument("--follow", action="store_true", help="keep printing new lines")
    p = leaf(ui, "restart", "stop, then start", cmd_restart, json_flag=False)
    _env_positional(p)
    _start_options(p)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    cognito.configure(sub)  # registered here so that main.py needs one call for both
