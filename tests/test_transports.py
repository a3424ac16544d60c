"""`--transport` / `CADENCE_TRANSPORT` parsing and `--db` / `CADENCE_DB`: clear usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.errors import UsageError
from cadence_engine.engine.transports import parse_transport
from cadence_engine.engine.transports.outbox import OutboxTransport
from cadence_engine.engine.transports.smtp import SmtpTransport


@pytest.mark.parametrize(
    ("spec", "host", "port", "tls"),
    [
        ("smtp://mail.example:2525", "mail.example", 2525, False),
        ("smtp://mail.example", "mail.example", 587, False),
        ("smtps://mail.example", "mail.example", 465, True),
        ("smtps://mail.example:4650", "mail.example", 4650, True),
    ],
    ids=["smtp-port", "smtp-default-587", "smtps-default-465", "smtps-port"],
)
def test_smtp_urls(spec: str, host: str, port: int, tls: bool) -> None:
    transport = parse_transport(spec)
    assert isinstance(transport, SmtpTransport)
    assert (transport.host, transport.port, transport.implicit_tls) == (host, port, tls)


def test_outbox_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADENCE_TRANSPORT", raising=False)
    default = parse_transport(None)
    assert isinstance(default, OutboxTransport) and default.folder == Path("./outbox")
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path}")
    assert isinstance(t := parse_transport(None), OutboxTransport) and t.folder == tmp_path


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("ftp://x", "unknown transport"),
        ("smtp://", "has no host"),
        ("smtp://:25", "has no host"),
        ("outbox:", "needs a folder"),
        ("smtp://mail.example:abc", "bad port"),
        ("smtp://mail.example:99999", "bad port"),
        ("smtp://dana:secret@mail.example:587", "must not carry credentials"),
        ("./outbox", "unknown transport"),
    ],
)
def test_bad_transports_are_usage_errors(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_transport(spec)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--transport", "ftp://x"], {}, "unknown transport"),
        ([], {"CADENCE_TRANSPORT": "smtp://"}, "has no host"),
        ([], {"CADENCE_DB": "mysql://db/x"}, "unknown state store URL"),
        ([], {"CADENCE_DB": "postgresql://db/x"}, "cannot connect to PostgreSQL"),
        (["--db", "/nonexistent-dir/x.db"], {}, "cannot open state store"),
    ],
    ids=["transport-flag", "transport-env", "db-url", "db-postgres", "db-path"],
)
def test_run_reports_bad_settings_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], says: str
) -> None:
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'out'}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cadence, ["run", "--once", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
