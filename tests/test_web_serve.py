"""`cadence serve` as a real process: waitress on loopback, the headers on the wire, a
base URL with a path (behind a proxy), and a clean stop on SIGTERM."""

from __future__ import annotations

import html
import http.client
import os
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers.runner_env import ROOT
from tests.helpers.serve_process import free_port, serve_command, serving
from tests.helpers.web_world import World, csrf_of


def _get(base: str, path: str, cookie: str = "") -> tuple[int, dict[str, str], str]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read().decode()
    finally:
        conn.close()


def test_serve_answers_on_loopback_with_the_headers(tmp_path: Path) -> None:
    world = World(tmp_path, tmp_path / "state.db", tmp_path / "outbox")
    with serving(world.env) as base:
        status, headers, body = _get(base, "/healthz")
        assert (status, body) == (200, "ok\n")
        assert headers["Server"] == "cadence" and headers["X-Frame-Options"] == "DENY"
        status, headers, _ = _get(base, "/")
        assert status == 303 and headers["Location"] == "/signin?next=/"


def test_serve_behind_a_proxy_path_keeps_the_prefix_in_links(tmp_path: Path) -> None:
    world = World(tmp_path, tmp_path / "state.db", tmp_path / "outbox")
    with serving(world.env, prefix="/cadence") as base:
        # The proxy may pass the prefix on or strip it: both reach the app.
        assert _get(base, "/cadence/healthz")[2] == "ok\n"
        assert _get(base, "/healthz")[2] == "ok\n"
        status, headers, _ = _get(base, "/cadence/feed")
        assert status == 303 and headers["Location"] == "/cadence/signin?next=/feed"
        page = _get(base, "/cadence/signin")[2]
        assert 'href="/cadence/static/cadence.css' in page
        world.cli("users", "add", "dana@acme.example")
        link = world.link("dana@acme.example", base)
        assert link.startswith(base + "/signin/")
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            conn.request("GET", urlsplit(link).path + "?next=/feed")
            answer = conn.getresponse()
            form = answer.read().decode()
            cookie = (answer.getheader("Set-Cookie") or "").split(";")[0]
            assert "Path=/cadence;" in (answer.getheader("Set-Cookie") or "") + ";"
            action = form.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            assert action.startswith("/cadence/signin/")
            conn.request(
                "POST", action, body=f"csrf={csrf_of(form)}",
                headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
            signed_in = conn.getresponse()
            signed_in.read()
            assert signed_in.status == 303
            assert signed_in.getheader("Location") == "/cadence/feed"
            # The session goes only to the Command Center's paths, not the whole host.
            session = [v for k, v in signed_in.getheaders() if k == "Set-Cookie"]
            assert any(v.startswith("cadence_session=") and "Path=/cadence;" in v + ";"
                       for v in session), session  # fmt: skip
        finally:
            conn.close()


def _session(base: str, link: str) -> str:
    """Sign in over HTTP with a one-time link: the session cookie."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", urlsplit(link).path)
        answer = conn.getresponse()
        form = answer.read().decode()
        cookie = (answer.getheader("Set-Cookie") or "").split(";")[0]
        conn.request(
            "POST", urlsplit(link).path, body=f"csrf={csrf_of(form)}",
            headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        signed_in = conn.getresponse()
        signed_in.read()
        assert signed_in.status == 303
        return (signed_in.getheader("Set-Cookie") or "").split(";")[0]
    finally:
        conn.close()


UNSUBSCRIBE_IN_BODY = """\
cadence: 1
name: Footer
sender: {name: Dana, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  intro: {subject: "Hello", body: "Hi.\\n\\nNot for you? {{ unsubscribe_url }}\\n"}
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
"""


def test_the_contact_page_shows_the_unsubscribe_link_the_runner_sent(tmp_path: Path) -> None:
    """The runner's CADENCE_BASE_URL made the link; `serve` runs with another one (its
    own address, http): the thread still shows what the contact received."""
    world = World(tmp_path, tmp_path / "state.db", tmp_path / "outbox")
    (tmp_path / "footer.yaml").write_text(UNSUBSCRIBE_IN_BODY, encoding="utf-8")
    (tmp_path / "ava.csv").write_text("email\nava@northwind.example\n", encoding="utf-8")
    world.cli("launch", str(tmp_path / "footer.yaml"), "--contacts", str(tmp_path / "ava.csv"),
              "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z")  # fmt: skip
    runner_env = {"CADENCE_BASE_URL": "https://cad.example.com"}
    world.cli("run", "--once", "--now", "2026-03-02T10:00Z", env=runner_env)
    token = world.token("ava@northwind.example")
    sent_link = f"https://cad.example.com/u/{token}"
    (message,) = world.outbox.iterdir()
    assert sent_link.encode() in message.read_bytes()
    world.cli("users", "add", "dana@acme.example")
    with serving(world.env) as base:
        cookie = _session(base, world.link("dana@acme.example", base))
        status, _, page = _get(base, "/contacts/ava@northwind.example", cookie)
    assert status == 200, page
    assert f"Not for you? {sent_link}" in html.unescape(page)
    assert "mailto:" not in page


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("nosuchhost.invalid", "is not an IP address or a host name that resolves"),
        ("", "is empty"),
        ("bad host", "is not an IP address or a host name that resolves"),
        ("256.1.1.1", "is not an IP address or a host name that resolves"),
    ],
    ids=["unresolvable", "empty", "space", "not-ipv4"],
)
def test_a_host_that_is_no_address_is_a_usage_error_naming_host(
    tmp_path: Path, host: str, says: str
) -> None:
    done = subprocess.run(
        serve_command("--host", host, "--port", "0"),
        env={**os.environ, "CADENCE_DB": str(tmp_path / "state.db")},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"error: --host {host!r} {says}" in done.stderr
    assert "hint: give an address of this machine to listen on: 127.0.0.1" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_an_address_of_another_machine_says_so_not_choose_another_port(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    done = subprocess.run(
        serve_command("--host", "192.0.2.1", "--port", "0"),
        env={**os.environ, "CADENCE_DB": str(tmp_path / "state.db")},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot listen on 192.0.2.1:0: Cannot assign requested address" in done.stderr
    assert "hint: 192.0.2.1 is not an address of this machine: give --host" in done.stderr
    assert "--port" not in done.stderr


def _ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("needs the IPv6 loopback ::1")


def test_serve_on_ipv6_names_its_address_with_brackets(tmp_path: Path) -> None:
    _ipv6_loopback()
    port = free_port("::1")
    env = {k: v for k, v in os.environ.items() if k != "CADENCE_BASE_URL"}
    child = subprocess.Popen(
        serve_command("--host", "::1", "--port", str(port)),
        env={**env, "CADENCE_DB": str(tmp_path / "state.db")},
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        first, second = child.stdout.readline(), child.stdout.readline()
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert first.startswith(f"Command Center on http://[::1]:{port} "), first
    assert f"set CADENCE_BASE_URL=http://[::1]:{port} (here" in second, second


def test_serve_takes_the_bracketed_ipv6_base_url_it_suggests(tmp_path: Path) -> None:
    _ipv6_loopback()
    world = World(tmp_path, tmp_path / "state.db", tmp_path / "outbox")
    with serving(world.env, host="::1") as base:
        assert base.startswith("http://[::1]:")
        assert _get(base, "/healthz")[2] == "ok\n"
        world.cli("users", "add", "dana@acme.example")
        link = world.link("dana@acme.example", base)
        assert link.startswith(base + "/signin/")
        cookie = _session(base, link)
        assert _get(base, "/feed", cookie)[0] == 200
