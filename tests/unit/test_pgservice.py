"""``tapdb pg start|stop|restart|status|logs``: the commands each platform gets,
built from injected detection (nothing is started), and the message where no
service manager applies."""

from __future__ import annotations

import pytest

from tapdb_core.cli import main as cli_main
from tapdb_core.cli import pg as cli_pg
from tapdb_core.errors import CommandError
from tapdb_core.pgservice import (
    Cluster,
    Platform,
    brew_formula,
    parse_lsclusters,
    service_for,
)

SYSTEMD = Platform(system="Linux", systemd=True)
DEBIAN = Platform(
    system="Linux",
    systemd=False,
    has_pg_ctlcluster=True,
    clusters=(
        Cluster(version="15", name="main", log_file="/var/log/postgresql/postgresql-15-main.log"),
        Cluster(version="16", name="extra", log_file=None),
    ),
)
MAC = Platform(system="Darwin", systemd=False, brew_formula="postgresql@16", brew_prefix="/opt/hb")
NOTHING = Platform(system="Linux", systemd=False)


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_systemd_commands(action: str) -> None:
    service = service_for(action, SYSTEMD)
    assert service.manager == "systemd"
    assert service.commands == (("systemctl", action, "postgresql"),)
    status = service_for("status", SYSTEMD)
    assert status.commands == (("systemctl", "status", "--no-pager", "postgresql"),)
    logs = service_for("logs", SYSTEMD, lines=20, follow=True)
    assert logs.log_commands == (
        ("journalctl", "-u", "postgresql*", "-n", "20", "--no-pager", "-f"),
    )


def test_debian_pg_ctlcluster_one_command_per_cluster() -> None:
    service = service_for("restart", DEBIAN)
    assert service.manager == "pg_ctlcluster"
    assert service.commands == (
        ("pg_ctlcluster", "15", "main", "restart"),
        ("pg_ctlcluster", "16", "extra", "restart"),
    )
    logs = service_for("logs", DEBIAN, lines=5)
    assert logs.log_commands == (("tail", "-n", "5", "/var/log/postgresql/postgresql-15-main.log"),)
    # systemd wins where it is PID 1, also on Debian
    both = Platform(system="Linux", systemd=True, has_pg_ctlcluster=True, clusters=DEBIAN.clusters)
    assert service_for("start", both).manager == "systemd"


def test_homebrew_services() -> None:
    assert service_for("start", MAC).commands == (("brew", "services", "start", "postgresql@16"),)
    assert service_for("status", MAC).commands == (("brew", "services", "info", "postgresql@16"),)
    logs = service_for("logs", MAC, lines=7, follow=True)
    assert logs.log_commands == (("tail", "-n", "7", "-F", "/opt/hb/var/log/postgresql@16.log"),)


def test_detection_parsers() -> None:
    listed = parse_lsclusters(
        "15 main 5432 down postgres /var/lib/postgresql/15/main "
        "/var/log/postgresql/postgresql-15-main.log\n"
        "garbage line\n"
    )
    assert listed == (
        Cluster(version="15", name="main", log_file="/var/log/postgresql/postgresql-15-main.log"),
    )
    services = (
        "Name          Status  User File\n"
        "postgresql@14 none\n"
        "postgresql@16 started me   ~/Library/LaunchAgents/homebrew.mxcl.postgresql@16.plist\n"
        "redis         none\n"
    )
    assert brew_formula(services) == "postgresql@16"
    assert brew_formula("Name Status\nredis none\n") is None


def test_none_applies_message() -> None:
    with pytest.raises(CommandError) as caught:
        service_for("start", NOTHING)
    message = str(caught.value)
    assert "no PostgreSQL system service applies on this machine" in message
    assert "systemd is not running as PID 1" in message
    assert "pg_ctlcluster is not installed" in message
    assert "tapdb pg start-local ENV" in message
    # Debian tools present but no cluster: still none
    empty = Platform(system="Linux", systemd=False, has_pg_ctlcluster=True)
    with pytest.raises(CommandError, match="pg_lsclusters lists no cluster"):
        service_for("stop", empty)


@pytest.mark.parametrize(
    "argv",
    [["pg", "start"], ["pg", "stop"], ["pg", "restart"], ["pg", "status"], ["pg", "logs"]],
)
def test_cli_says_none_applies(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAPDB_ENV", raising=False)
    cli_pg.set_platform(NOTHING)
    try:
        code = cli_main.main(argv)
    finally:
        cli_pg.set_platform(None)
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("tapdb: error:")]
    assert len(lines) == 1, err
    assert "no PostgreSQL system service applies on this machine" in lines[0]
