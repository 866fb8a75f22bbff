"""The machine's PostgreSQL service (``tapdb pg start|stop|restart|status|logs``).

Which service manager applies is detected once (:func:`detect`) and passed in,
so the commands each platform gets are built (and tested) without starting
anything: systemd where it is PID 1, Debian's ``pg_ctlcluster`` (one command per
cluster ``pg_lsclusters`` lists), Homebrew services on macOS. Where none
applies the error says so and points at the per-environment local cluster.
"""

from __future__ import annotations

import platform as _platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal, TypeAlias

import attrs

from tapdb_core.errors import CommandError, UsageError

Action: TypeAlias = Literal["start", "stop", "restart", "status"]
ACTIONS: Final = ("start", "stop", "restart", "status")
Runner: TypeAlias = Callable[[Sequence[str]], str]
"""Runs a read-only query command and returns its stdout ("" when it fails)."""


@attrs.frozen(kw_only=True)
class Cluster:
    """One Debian cluster as ``pg_lsclusters`` lists it."""

    version: str
    name: str
    log_file: str | None


@attrs.frozen(kw_only=True)
class Platform:
    """What this machine offers for running PostgreSQL as a service."""

    system: str
    """``platform.system()``: Linux, Darwin ..."""
    systemd: bool
    """systemd is PID 1 (``/run/systemd/system`` exists)."""
    clusters: tuple[Cluster, ...] = ()
    """Debian clusters (``pg_lsclusters``); empty when the tool is missing."""
    has_pg_ctlcluster: bool = False
    brew_formula: str | None = None
    """The Homebrew PostgreSQL formula (``postgresql@16``), when Homebrew has one."""
    brew_prefix: str = "/opt/homebrew"
    """``brew --prefix`` (its ``var/log`` holds the formula's server log)."""


@attrs.frozen(kw_only=True)
class Service:
    """The manager that applies and the commands of each action."""

    manager: Literal["systemd", "pg_ctlcluster", "homebrew"]
    unit: str
    """What is managed: the systemd unit, the clusters, the Homebrew formula."""
    commands: tuple[tuple[str, ...], ...]
    log_commands: tuple[tuple[str, ...], ...] = ()


def _run_quietly(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def parse_lsclusters(output: str) -> tuple[Cluster, ...]:
    """``pg_lsclusters --no-header``: version, name, port, status, owner, data dir, log."""
    found: list[Cluster] = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0][:1].isdigit():
            log = parts[6] if len(parts) >= 7 and parts[6].startswith("/") else None
            found.append(Cluster(version=parts[0], name=parts[1], log_file=log))
    return tuple(found)


def brew_formula(output: str) -> str | None:
    """The PostgreSQL formula in ``brew services list`` output (newest name last wins
    ties: a started one is preferred)."""
    names = [line.split()[0] for line in output.splitlines()[1:] if line.strip()]
    candidates = [n for n in names if n == "postgresql" or n.startswith("postgresql@")]
    started = [
        line.split()[0]
        for line in output.splitlines()[1:]
        if line.strip() and line.split()[0] in candidates and " started" in line
    ]
    chosen = started or candidates
    return chosen[-1] if chosen else None


def detect(run: Runner = _run_quietly) -> Platform:
    """This machine (reads ``/run/systemd/system``, ``pg_lsclusters``, ``brew``)."""
    system = _platform.system()
    has_ctl = shutil.which("pg_ctlcluster") is not None
    clusters = parse_lsclusters(run(["pg_lsclusters", "--no-header"])) if has_ctl else ()
    formula = None
    prefix = "/opt/homebrew"
    if system == "Darwin" and shutil.which("brew"):
        formula = brew_formula(run(["brew", "services", "list"]))
        prefix = run(["brew", "--prefix"]).strip() or prefix
    return Platform(
        system=system,
        systemd=Path("/run/systemd/system").is_dir(),
        clusters=clusters,
        has_pg_ctlcluster=has_ctl,
        brew_formula=formula,
        brew_prefix=prefix,
    )


def service_for(action: str, found: Platform, *, lines: int = 50, follow: bool = False) -> Service:
    """The commands that do ``action`` (start, stop, restart, status; ``logs`` too)
    on this platform. Raises :class:`CommandError` where no service manager applies."""
    if action not in (*ACTIONS, "logs"):
        raise UsageError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}, logs")
    if lines < 0:
        raise UsageError("--lines must be 0 or more")
    if found.systemd:
        unit = "postgresql"
        command: tuple[str, ...] = ("systemctl", action, unit)
        if action in ("status", "logs"):
            command = ("systemctl", "status", "--no-pager", unit)
        journal = ("journalctl", "-u", f"{unit}*", "-n", str(lines), "--no-pager")
        return Service(
            manager="systemd",
            unit=unit,
            commands=(command,),
            log_commands=((*journal, "-f") if follow else journal,),
        )
    if found.has_pg_ctlcluster and found.clusters:
        verb = action if action != "logs" else "status"
        tail = ("tail", "-n", str(lines), *(("-F",) if follow else ()))
        logs = tuple(c.log_file for c in found.clusters if c.log_file)
        return Service(
            manager="pg_ctlcluster",
            unit=", ".join(f"{c.version}/{c.name}" for c in found.clusters),
            commands=tuple(("pg_ctlcluster", c.version, c.name, verb) for c in found.clusters),
            log_commands=((*tail, *logs),) if logs else (),
        )
    if found.system == "Darwin" and found.brew_formula:
        formula = found.brew_formula
        verb = "info" if action in ("status", "logs") else action
        log = f"{found.brew_prefix}/var/log/{formula}.log"
        return Service(
            manager="homebrew",
            unit=formula,
            commands=(("brew", "services", verb, formula),),
            log_commands=(("tail", "-n", str(lines), *(("-F",) if follow else ()), log),),
        )
    raise CommandError(no_service_message(found))


def no_service_message(found: Platform) -> str:
    reasons = ["systemd is not running as PID 1"]
    if found.has_pg_ctlcluster:
        reasons.append("pg_lsclusters lists no cluster")
    else:
        reasons.append("Debian's pg_ctlcluster is not installed")
    if found.system == "Darwin":
        reasons.append("Homebrew has no PostgreSQL formula")
    else:
        reasons.append(f"this is {found.system or 'an unknown system'}, not macOS with Homebrew")
    return (
        "no PostgreSQL system service applies on this machine ("
        + "; ".join(reasons)
        + "): for a local cluster per environment use `tapdb pg init ENV` and "
        "`tapdb pg start-local ENV`"
    )
