"""The exact bytes `cadence run` writes for representative messages, pinned.

Launch ids and unsubscribe tokens are made deterministic, so a first email and its
threaded follow-up (quote, `Re:`, In-Reply-To/References), with the mailto unsubscribe
and with the one-click https one, come out byte for byte the same on every run. The
contacts cover plain ASCII, non-ASCII names and company, an IDN domain, a non-ASCII local
part (SMTPUTF8), an RFC 2047 encoded word in contact data, a name too long to fold and a
quoted display name. The pinned files live in tests/cases/message_bytes/; a change to
them is a change to what every recipient receives.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence

PINNED = Path(__file__).parent / "cases" / "message_bytes"

CADENCE = """\
cadence: 1
name: Bytes
sender: {name: Dana Reyes, email: dana@acme.example}
contact_fields: [team_size]
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  hello:
    subject: "{{ contact.company }} and on-call load"
    body: |
      Hi {{ contact.first_name | default("there") }},

      Platform teams of {{ contact.team_size | default("your") }} engineers tell us the
      pager, not the roadmap, decides their week. Worth a 20-minute look next week?

      {{ sender.name }}
      Unsubscribe: {{ unsubscribe_url }}
  bump:
    body: |
      Hi {{ contact.first_name | default("there") }}, one more thought for {{ contact.company }}.

      {{ sender.name }}
steps:
  - {id: hello, day: 1, email: {template: hello, send: {at: "09:00"}}}
  - {id: bump, day: 3, email: {template: bump, send: {at: "09:00"}, follow_up: true}}
"""

CONTACTS = """\
email,first_name,last_name,company,team_size
ava@northwind.example,Ava,Stone,Northwind,12
zoe@globex.example,Zoë,Ångström,Grüße & Söhne,
pat@bücher.example,Pat,O'Brien,=?utf-8?q?Acme_Corp=0D=0ABcc=3A_attacker=40evil.example?=,7
jörg@a.example,Jörg,,Café,3
long@initech.example,{long},,Initech,40
""".format(long="L" * 90)

RUNS = ("2026-03-02T10:00Z", "2026-03-04T10:00Z")  # the first email, then its follow-up


def _run_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str | None) -> Path:
    ids = itertools.count(1)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(ids)))
    tokens = itertools.count(1)
    monkeypatch.setattr(
        "cadence_engine.engine.launch.secrets.token_urlsafe",
        lambda n=16: f"T0k-{next(tokens):04d}_aBcDeFgHiJkLm",
    )
    if base_url is None:
        monkeypatch.delenv("CADENCE_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("CADENCE_BASE_URL", base_url)
    monkeypatch.delenv("CADENCE_UNSUBSCRIBE_URL", raising=False)
    (tmp_path / "bytes.yaml").write_text(CADENCE, encoding="utf-8")
    (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    db, out = str(tmp_path / "state.db"), tmp_path / "out"

    def cli(*args: str) -> None:
        result = CliRunner().invoke(cadence, [*args, "--db", db], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    cli("launch", str(tmp_path / "bytes.yaml"), "--contacts", str(tmp_path / "contacts.csv"),
        "--now", "2026-03-02T08:00Z", "--start", "now")  # fmt: skip
    for at in RUNS:
        cli("run", "--once", "--now", at, "--transport", f"outbox:{out}")
    return out


@pytest.mark.parametrize("base_url", [None, "https://cadence.example.com"], ids=["mailto", "https"])
def test_sent_messages_are_byte_for_byte_the_pinned_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str | None
) -> None:
    out = _run_all(tmp_path, monkeypatch, base_url)
    kind = "https" if base_url else "mailto"
    written = {p.name: p.read_bytes() for p in sorted(out.glob("*.eml"))}
    pinned = {p.name[len(kind) + 1 :]: p.read_bytes() for p in PINNED.glob(f"{kind}-*.eml")}
    assert len(written) == 10  # five contacts, two emails each
    assert sorted(written) == sorted(pinned)
    for name, data in written.items():
        assert data == pinned[name], name
