"""SMTP sessions against a real server (aiosmtpd, STARTTLS + AUTH on 127.0.0.1): parallel
sessions, messages per session, the shared rate limit, 421 answers, SMTPUTF8, and the
transport URL's options and their errors."""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cadence_engine.cli import cadence
from cadence_engine.engine.store.sqlite import SqliteStore
from cadence_engine.engine.transports import Envelope, PermanentFailure, Withheld, masked
from cadence_engine.engine.transports.smtp import (
    _PLAIN_ADDRESS,
    SmtpOptions,
    SmtpSettings,
    SmtpTransport,
    _path,
    parse_options,
)
from tests.helpers.runner_env import write_cadence, write_contacts
from tests.helpers.smtp_server import PASSWORD, USER, SmtpServer, serve


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    yield from serve(tmp_path_factory.mktemp("smtp-sessions"))


@pytest.fixture(scope="module")
def smtp_utf8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    yield from serve(tmp_path_factory.mktemp("smtp-utf8"), smtputf8=True)


@pytest.fixture
def env(smtp: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    smtp.recorder.clear()
    for key, value in smtp.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "state.db"))
    return tmp_path


def _invoke(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def _launch_and_run(folder: Path, contacts: int, url: str) -> str:
    _invoke(
        "launch", str(write_cadence(folder)), "--contacts", str(write_contacts(folder, contacts)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    return _invoke("run", "--once", "--now", "2026-03-02T10:00Z", "--transport", url)


def _states(folder: Path, contacts: int) -> Counter[str]:
    with SqliteStore(folder / "state.db") as store:
        return Counter(r.state for e in range(1, contacts + 1) for r in store.step_runs(e))


def test_four_sessions_share_the_work(env: Path, smtp: SmtpServer) -> None:
    out = _launch_and_run(env, 20, f"{smtp.url}?connections=4")
    assert "sent 20" in out
    got = smtp.recorder.received
    assert sorted(r.rcpt_tos[0] for r in got) == sorted(f"person{i}@example.com" for i in range(20))
    assert Counter(smtp.recorder.message_ids()).most_common(1)[0][1] == 1
    # Four connections kept open, five messages each; no RSET after a finished transaction.
    assert sorted(Counter(r.peer for r in got).values()) == [5, 5, 5, 5]
    assert smtp.recorder.resets == 0


def test_rset_after_a_refused_recipient_then_the_session_goes_on(
    env: Path, smtp: SmtpServer
) -> None:
    smtp.recorder.defer.add("person1@example.com")
    out = _launch_and_run(env, 3, f"{smtp.url}?connections=1")
    assert "sent 2" in out and "retried 1" in out
    assert smtp.recorder.resets == 1
    assert len({r.peer for r in smtp.recorder.received}) == 1  # the same connection


def test_a_connection_found_closed_is_opened_again(smtp: SmtpServer) -> None:
    import socket

    transport = _opened(smtp, SmtpOptions(connections=1))
    try:
        first = Envelope("dana@acme.example", "p0@example.com", "<0@a>")
        assert isinstance(transport.send_many([(first, _message(0))])[0], str)
        conn = transport.sessions[0].conn
        assert conn is not None and conn.sock is not None
        conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had timed the session out
        second = Envelope("dana@acme.example", "p1@example.com", "<1@a>")
        (result,) = transport.send_many([(second, _message(1))])
    finally:
        transport.close()
    assert isinstance(result, str) and result.startswith("250"), result
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["p0@example.com"], ["p1@example.com"]]
    assert transport.sessions[0].connections == 2


def test_per_connection_reconnects(env: Path, smtp: SmtpServer) -> None:
    assert "sent 5" in _launch_and_run(env, 5, f"{smtp.url}?connections=1&per_connection=2")
    per_peer = Counter(r.peer for r in smtp.recorder.received)
    assert sorted(per_peer.values()) == [1, 2, 2]


def test_rate_is_honoured_across_sessions(env: Path, smtp: SmtpServer) -> None:
    rate, contacts = 20, 45
    assert f"sent {contacts}" in _launch_and_run(
        env, contacts, f"{smtp.url}?connections=4&rate={rate}/s"
    )
    times = sorted(r.at for r in smtp.recorder.received)
    assert len(times) == contacts
    assert len({r.peer for r in smtp.recorder.received}) == 4
    # In every second the server saw at most `rate` messages (one more for the window's
    # edges). Unlimited, these 45 arrive within a fraction of a second.
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= rate + 1, busiest


def test_421_slows_that_session_down_and_loses_nothing(env: Path, smtp: SmtpServer) -> None:
    smtp.recorder.slow_down = 2
    out = _launch_and_run(env, 12, f"{smtp.url}?connections=4")
    assert "sent 12" in out and "retried" not in out
    assert sorted(Counter(smtp.recorder.message_ids()).values()) == [1] * 12
    assert _states(env, 12) == Counter({"sent": 12})
    with SqliteStore(env / "state.db") as store:
        assert all(store.step_runs(e)[0].attempts == 0 for e in range(1, 13))
    # Each 421 closed one session, which came back on a new connection.
    assert len(set(smtp.recorder.mail_peers)) == 4 + 2


def _message(i: int, *, recipient: str | None = None, smtputf8: bool = False) -> bytes:
    return (
        f"From: dana@acme.example\r\nTo: {recipient or f'p{i}@example.com'}\r\n"
        f"Subject: {i}\r\nMessage-ID: <{i}@acme.example>\r\n\r\nHello {i}\r\n"
    ).encode()


def _opened(server: SmtpServer, options: SmtpOptions) -> SmtpTransport:
    """A transport with its sessions open, on a server whose recorder starts empty."""
    server.recorder.clear()
    transport = _transport(server, options)
    transport.open()
    return transport


def _envelopes(n: int) -> list[Envelope]:
    """`n` envelopes from the sender to p0@…, p1@…, in order (see `_message`)."""
    return [Envelope("dana@acme.example", f"p{i}@example.com", f"<{i}@a>") for i in range(n)]


def _transport(server: SmtpServer, options: SmtpOptions) -> SmtpTransport:
    settings = SmtpSettings(user=USER, password=PASSWORD, cafile=str(server.cafile), timeout=10)
    return SmtpTransport(
        server.host, server.port, implicit_tls=False, settings=settings, options=options
    )


def test_a_slow_down_backs_off_only_the_session_that_got_it(smtp: SmtpServer) -> None:
    smtp.recorder.clear()
    smtp.recorder.slow_down = 1
    transport = _transport(smtp, SmtpOptions(connections=4, slow_down_first=0.01))
    transport.open()
    try:
        envelopes = _envelopes(4)
        results = transport.send_many([(e, _message(i)) for i, e in enumerate(envelopes)])
    finally:
        transport.close()
    assert all(isinstance(r, str) and r.startswith("250") for r in results), results
    assert sorted(s.slow_downs for s in transport.sessions) == [0, 0, 0, 1]
    assert len(smtp.recorder.received) == 4


def test_smtputf8_when_offered_else_that_message_fails(
    smtp: SmtpServer, smtp_utf8: SmtpServer
) -> None:
    local = "jörg@example.com"
    batch = [
        (
            Envelope("dana@acme.example", local, "<u@a>", smtputf8=True),
            _message(1, recipient=local),
        ),
        (Envelope("dana@acme.example", "ok@example.com", "<o@a>"), _message(2)),
    ]
    # Not marked by the builder, still not ASCII: the same rule, never an encoding crash.
    unmarked = (Envelope("dana@acme.example", local, "<v@a>"), _message(3, recipient=local))
    batch.append(unmarked)
    for server in (smtp, smtp_utf8):
        server.recorder.clear()
    refused = _transport(smtp, SmtpOptions(connections=2))
    refused.open()
    try:
        failed, fine, also = refused.send_many(batch)
    finally:
        refused.close()
    for refusal in (failed, also):
        assert isinstance(refusal, PermanentFailure) and not refusal.recipient
        assert "SMTPUTF8" in str(refusal) and local in str(refusal)
    assert isinstance(fine, str) and fine.startswith("250")
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["ok@example.com"]]

    offered = _transport(smtp_utf8, SmtpOptions(connections=1))
    offered.open()
    try:
        results = offered.send_many(batch)
    finally:
        offered.close()
    assert all(isinstance(r, str) and r.startswith("250") for r in results), results
    assert [r.rcpt_tos for r in smtp_utf8.recorder.received] == [
        [local],
        ["ok@example.com"],
        [local],
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("connections=0", "connections"),
        ("connections=65", "connections"),
        ("connections=four", "connections"),
        ("per_connection=-1", "per_connection"),
        ("per_connection=", "per_connection"),
        ("rate=10", "rate"),
        ("rate=0/s", "rate"),
        ("rate=fast", "rate"),
        ("rate=10/fortnight", "rate"),
        ("connection=4", "connection"),
        ("connections=2&connections=3", "connections"),
    ],
)
def test_bad_option_is_a_usage_error_naming_it(env: Path, query: str, named: str) -> None:
    out = _invoke("run", "--once", "--transport", f"smtp://127.0.0.1:2525?{query}", code=2)
    assert f"{named!r}" in out or f"{named}=" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "url",
    [
        "smtpx://dana:S3cr3t@mail.example",  # unknown scheme
        "smtp://dana:S3cr3t@",  # no host
        "smtp://dana:S3cr3t@mail.example:99999",  # bad port
        "smtp://dana:S3cr3t@mail.example:587",  # credentials in the URL
        "smtp://dana:S3/cr3t@mail.example",  # a password that ends the authority early
        "smtp://dana:S3cr3t@mail.example?connections=0",
        "smtp://dana:S3cr3t@[::1",  # not a URL
    ],
)
@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_rejected_url_never_shows_its_credentials(
    env: Path, url: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "flag":
        out = _invoke("run", "--once", "--transport", url, code=2)
    else:
        monkeypatch.setenv("CADENCE_TRANSPORT", url)
        out = _invoke("run", "--once", code=2)
    assert "error:" in out and "***@" in out, out
    assert "S3" not in out and "dana" not in out, out


@given(
    scheme=st.sampled_from(["smtp", "smtps", "smtpx", "http"]),
    secret=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1),
)
def test_masked_keeps_nothing_before_the_host(scheme: str, secret: str) -> None:
    shown = masked(f"{scheme}://dana:{secret}@mail.example:587")
    assert shown == f"{scheme}://***@mail.example:587"


@given(
    connections=st.integers(1, 64),
    per_connection=st.integers(1, 10_000),
    amount=st.integers(1, 100_000),
    unit=st.sampled_from([("s", 1.0), ("min", 60.0), ("h", 3600.0)]),
)
def test_good_options_are_read_as_given(
    connections: int, per_connection: int, amount: int, unit: tuple[str, float]
) -> None:
    name, seconds = unit
    query = {
        "connections": [str(connections)],
        "per_connection": [str(per_connection)],
        "rate": [f"{amount}/{name}"],
    }
    options = parse_options(query, "'smtp://h'")
    assert (options.connections, options.per_connection) == (connections, per_connection)
    assert options.rate == pytest.approx(amount / seconds)


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_one_session_commits_while_the_server_answers_mail(smtp: SmtpServer) -> None:
    """`ready` (the runner's `sending` commit and last check) runs once MAIL FROM is on
    its way, and before anything of the message is handed over."""
    transport = _opened(smtp, SmtpOptions(connections=1))
    seen: list[tuple[bool, int]] = []

    def ready() -> set[int]:
        mail_sent = _until(lambda: len(smtp.recorder.mail_peers) == 1)
        seen.append((mail_sent, len(smtp.recorder.received)))
        return {0}

    try:
        first = Envelope("dana@acme.example", "p0@example.com", "<0@a>")
        (result,) = transport.send_many([(first, _message(0))], ready)
    finally:
        transport.close()
    assert seen == [(True, 0)]
    assert isinstance(result, str) and result.startswith("250"), result
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["p0@example.com"]]


@pytest.mark.parametrize("connections", [1, 2])
def test_a_withheld_message_is_never_handed_over(smtp: SmtpServer, connections: int) -> None:
    transport = _opened(smtp, SmtpOptions(connections=connections))
    envelopes = _envelopes(3)
    try:
        results = transport.send_many(
            [(e, _message(i)) for i, e in enumerate(envelopes)], lambda: [1]
        )
        # The session that had one withheld goes on cleanly (RSET when MAIL was sent).
        again = transport.send_many([(envelopes[2], _message(2))], lambda: [0])
    finally:
        transport.close()
    assert isinstance(results[0], Withheld) and isinstance(results[2], Withheld), results
    assert isinstance(results[1], str) and results[1].startswith("250"), results
    assert isinstance(again[0], str) and again[0].startswith("250"), again
    received = [r.rcpt_tos for r in smtp.recorder.received]
    assert received == [["p1@example.com"], ["p2@example.com"]]


@pytest.mark.parametrize("connections", [1, 2])
def test_when_ready_fails_nothing_is_handed_over(smtp: SmtpServer, connections: int) -> None:
    transport = _opened(smtp, SmtpOptions(connections=connections))
    envelopes = _envelopes(2)

    def ready() -> list[int]:
        raise OSError("disk I/O error")

    try:
        with pytest.raises(OSError, match="disk I/O error"):
            transport.send_many([(e, _message(i)) for i, e in enumerate(envelopes)], ready)
        assert smtp.recorder.received == []
        (result,) = transport.send_many([(envelopes[1], _message(1))])
    finally:
        transport.close()
    assert isinstance(result, str) and result.startswith("250"), result
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["p1@example.com"]]


@given(st.from_regex(_PLAIN_ADDRESS, fullmatch=True))
def test_a_plain_address_is_sent_as_smtplib_would(address: str) -> None:
    assert _path(address) == smtplib.quoteaddr(address)


def test_an_address_that_needs_quoting_goes_through_smtplib() -> None:
    for address in ('"dana smith"@acme.example', "Dana <dana@acme.example>", "<>"):
        assert not _PLAIN_ADDRESS.fullmatch(address)
        assert _path(address) == smtplib.quoteaddr(address)


def test_a_reconnect_does_not_keep_the_commit_waiting(smtp: SmtpServer) -> None:
    """A session that must open a new connection first (here after `per_connection`)
    lets `ready` run before it, not after the TLS and AUTH of the new one."""
    transport = _opened(smtp, SmtpOptions(connections=1, per_connection=1))
    session = transport.sessions[0]
    seen: list[int] = []

    def ready() -> list[int]:
        seen.append(session.connections)
        return [0]

    try:
        for i in range(2):
            envelope = Envelope("dana@acme.example", f"p{i}@example.com", f"<{i}@a>")
            (result,) = transport.send_many([(envelope, _message(i))], ready)
            assert isinstance(result, str) and result.startswith("250"), result
    finally:
        transport.close()
    assert seen == [1, 1]  # the second `ready` came before the second connection
    assert session.connections == 2


def test_ready_is_called_once_when_nothing_got_as_far_as_mail(smtp: SmtpServer) -> None:
    transport = _opened(smtp, SmtpOptions(connections=1))
    calls: list[int] = []

    def ready() -> list[int]:
        calls.append(len(smtp.recorder.mail_peers))
        return [0]

    try:  # this server offers no SMTPUTF8: the message fails before MAIL
        envelope = Envelope("dana@acme.example", "jörg@example.com", "<u@a>", smtputf8=True)
        (result,) = transport.send_many([(envelope, _message(0, smtputf8=True))], ready)
    finally:
        transport.close()
    assert calls == [0]
    assert isinstance(result, PermanentFailure) and "SMTPUTF8" in str(result), result
