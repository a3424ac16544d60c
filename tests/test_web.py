"""The Command Center over HTTP (Flask's test client): sign-in, sessions, CSRF, who sees
what, the pages, form errors, the one-click unsubscribe endpoint and the headers."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from cadence_engine.engine.limits import MAX_SUBJECT_CHARS
from cadence_engine.engine.users import open_users, sign_in_link
from cadence_engine.engine.web.app import _safe_next, close_app, create_app
from tests.helpers.web_world import (
    AVA,
    BEN,
    BOSS,
    CY,
    DANA,
    ELI,
    HOSTILE_NAME,
    MALLORY,
    World,
    add_trouble,
    csrf_of,
    make_world,
)

NOW = datetime(2026, 3, 3, 16, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def app(world: World) -> Iterator[Flask]:
    app = create_app(str(world.db), base="http://127.0.0.1:8080", clock=lambda: NOW)
    yield app
    close_app(app)


def sign_in(app: Flask, world: World, email: str) -> FlaskClient:
    client = app.test_client()
    path = world.link(email).removeprefix("http://127.0.0.1:8080")
    page = client.get(path)
    assert page.status_code == 200
    answer = client.post(path, data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text
    return client


def page_csrf(client: FlaskClient, path: str = "/") -> str:
    return csrf_of(client.get(path).text)


# -- nothing without a session ---------------------------------------------------------

PRIVATE_GETS = ["/", "/tasks/2", "/contacts/ava@northwind.example", "/feed", "/cadences"]
PRIVATE_POSTS = ["/tasks/2/done", "/tasks/2/skip", "/tasks/2/send", "/signout"]


@pytest.mark.parametrize("path", PRIVATE_GETS)
def test_every_page_without_a_session_redirects_to_sign_in(app: Flask, path: str) -> None:
    answer = app.test_client().get(path)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/signin?next=")


@pytest.mark.parametrize("path", PRIVATE_POSTS)
def test_every_action_without_a_session_is_401_and_changes_nothing(
    app: Flask, world: World, path: str
) -> None:
    before = world.query("SELECT count(*) FROM events")
    assert app.test_client().post(path, data={"csrf": "x"}).status_code == 401
    assert world.query("SELECT count(*) FROM events") == before
    assert world.step(AVA, "call")[0] == "open"


def test_a_forged_session_cookie_is_no_session(app: Flask) -> None:
    client = app.test_client()
    client.set_cookie("cadence_session", "made-up")
    assert client.get("/").status_code == 303


def test_only_sign_in_healthz_and_unsubscribe_answer_without_a_session(
    app: Flask, world: World
) -> None:
    client = app.test_client()
    assert client.get("/healthz").text == "ok\n"
    assert "cadence users link" in client.get("/signin").text
    assert client.get(f"/u/{world.token(AVA)}").status_code == 200


def test_healthz_answers_503_while_the_store_cannot_be_read(app: Flask, world: World) -> None:
    client = app.test_client()
    whole = world.db.read_bytes()
    world.db.write_bytes(b"not a database " * 512)
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.mimetype == "text/plain"
    assert answer.text.startswith("unavailable: the state store cannot be read: ")
    assert "is not a cadence state store" in answer.text and "Traceback" not in answer.text
    world.db.write_bytes(whole)
    assert client.get("/healthz").text == "ok\n"


# -- sign-in links and sessions ----------------------------------------------------------


def test_sign_in_link_works_once(app: Flask, world: World) -> None:
    link = world.link(DANA).removeprefix("http://127.0.0.1:8080")
    first = app.test_client()
    page = first.get(link)
    assert first.post(link, data={"csrf": csrf_of(page.text)}).status_code == 303
    assert "Call Ava" in first.get("/").text
    second = app.test_client()
    page = second.get(link)
    refused = second.post(link, data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 403
    assert "used or has expired" in refused.text
    assert second.get("/").status_code == 303


def test_expired_sign_in_link_is_refused(app: Flask, world: World) -> None:
    users = open_users(str(world.db))
    try:
        stale = datetime.now(UTC) - timedelta(minutes=16)
        link = sign_in_link(users, DANA, base="", now=stale)
    finally:
        users.close()
    client = app.test_client()
    page = client.get(link)
    assert client.post(link, data={"csrf": csrf_of(page.text)}).status_code == 403
    assert client.get("/").status_code == 303


def test_sign_in_form_without_its_token_is_refused_and_the_link_kept(
    app: Flask, world: World
) -> None:
    link = world.link(DANA).removeprefix("http://127.0.0.1:8080")
    client = app.test_client()
    client.get(link)
    assert client.post(link, data={}).status_code == 403
    page = client.get(link)
    assert client.post(link, data={"csrf": csrf_of(page.text)}).status_code == 303


def test_session_cookie_flags(app: Flask, world: World, tmp_path: Path) -> None:
    link = world.link(DANA).removeprefix("http://127.0.0.1:8080")
    client = app.test_client()
    page = client.get(link)
    answer = client.post(link, data={"csrf": csrf_of(page.text)})
    cookie = next(
        c for c in answer.headers.getlist("Set-Cookie") if c.startswith("cadence_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = create_app(str(world.db), base="https://cadence.example.com", clock=lambda: NOW)
    try:
        client = secure.test_client()
        link = world.link(DANA).removeprefix("http://127.0.0.1:8080")
        page = client.get(link)
        answer = client.post(link, data={"csrf": csrf_of(page.text)})
        cookies = answer.headers.getlist("Set-Cookie")
        assert any(c.startswith("cadence_session=") and "Secure" in c for c in cookies)
    finally:
        close_app(secure)


def test_sign_in_goes_back_only_to_a_path_of_this_site(app: Flask, world: World) -> None:
    link = world.link(DANA).removeprefix("http://127.0.0.1:8080")
    client = app.test_client()
    page = client.get(link)
    answer = client.post(link + "?next=//evil.example/", data={"csrf": csrf_of(page.text)})
    assert answer.headers["Location"] == "/"


@given(st.one_of(st.text(max_size=40), st.from_regex(r"/[\t\n\r /\\]{1,3}evil\.example")))
def test_next_is_never_another_site(target: str) -> None:
    safe = _safe_next(target)
    # As a browser reads a Location (WHATWG URL: tabs and newlines removed, leading
    # spaces and controls trimmed, a backslash is a slash): still a path of this site.
    seen = "".join(c for c in safe if c not in "\t\n\r").lstrip("\x00 ").replace("\\", "/")
    assert seen.startswith("/") and not seen.startswith("//")
    assert safe.isascii() and safe.isprintable() and " " not in safe


@pytest.mark.parametrize("bad", ["/%09/evil.example", "/%0A/evil.example", "/%0D%0A/x"])
def test_sign_in_never_follows_a_next_with_a_control_character(
    app: Flask, world: World, bad: str
) -> None:
    link = world.link(DANA).removeprefix("http://127.0.0.1:8080")
    client = app.test_client()
    page = client.get(link)
    answer = client.post(f"{link}?next={bad}", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_sign_out_ends_the_session(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    answer = client.post("/signout", data={"csrf": page_csrf(client)})
    assert answer.status_code == 303
    assert client.get("/").status_code == 303
    assert "You are signed out" in client.get("/signin?notice=signed-out").text


def test_removing_a_user_ends_their_sessions(app: Flask, world: World) -> None:
    client = sign_in(app, world, ELI)
    assert client.get("/").status_code == 200
    world.cli("users", "remove", ELI)
    assert client.get("/").status_code == 303


# -- CSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "", "wrong"], ids=["absent", "empty", "wrong"])
def test_post_without_the_csrf_token_is_403_and_changes_nothing(
    app: Flask, world: World, csrf: str | None
) -> None:
    client = sign_in(app, world, DANA)
    task = world.task_id(AVA, "call")
    data = {} if csrf is None else {"csrf": csrf}
    assert client.post(f"/tasks/{task}/done", data=data).status_code == 403
    assert world.step(AVA, "call")[0] == "open"


# -- who sees what -----------------------------------------------------------------------


def test_a_rep_sees_only_the_tasks_of_their_own_cadences(app: Flask, world: World) -> None:
    dana = sign_in(app, world, DANA).get("/").text
    assert "Call Ava" in dana and "Call Ben" not in dana
    eli = sign_in(app, world, ELI).get("/").text
    assert "Call Ben" in eli and "Call Ava" not in eli
    boss = sign_in(app, world, BOSS).get("/").text
    assert "Call Ben" in boss and "Call Ava" in boss


def test_a_rep_opening_another_reps_task_by_id_gets_404(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    bens = world.task_id(BEN, "call")
    _task_pages_are_404(client, str(bens))
    assert world.step(BEN, "call")[0] == "open"
    assert client.get(f"/contacts/{BEN}").status_code == 404
    assert client.get("/tasks/99999").status_code == 404


def test_a_task_id_past_64_bits_is_404_not_a_server_error(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    _task_pages_are_404(client, "99999999999999999999999")


def _task_pages_are_404(client: FlaskClient, task_id: str) -> None:
    """The task page, marking it done and sending it all answer 404 for `task_id`."""
    assert client.get(f"/tasks/{task_id}").status_code == 404
    csrf = page_csrf(client)
    assert client.post(f"/tasks/{task_id}/done", data={"csrf": csrf}).status_code == 404
    answer = client.post(
        f"/tasks/{task_id}/send",
        data={"csrf": csrf, "subject": "s", "body": "b", "action": "send"},
    )
    assert answer.status_code == 404


def test_feed_and_overview_are_limited_to_the_reps_cadences(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    feed = client.get("/feed").text
    assert AVA in feed and BEN not in feed
    overview = client.get("/cadences").text
    assert "Dana outbound" in overview and "Eli outbound" not in overview
    admin = sign_in(app, world, BOSS).get("/cadences").text
    assert "Dana outbound" in admin and "Eli outbound" in admin


STAT = re.compile(r"<div(?: class=\"\w+\")?><b>(\d+)</b>([^<]+)</div>")


def _overview_cards(page: str) -> dict[str, dict[str, int]]:
    """Each version's card on /cadences: its counts by label."""
    cards = re.findall(r'data-version="([0-9a-f]+)">(.*?)</section>', page, re.S)
    return {v: {label: int(n) for n, label in STAT.findall(body)} for v, body in cards}


def _status_cards(world: World) -> dict[str, tuple[str, dict[str, int]]]:
    """`cadence status --format json`: each version's sender and counts, by the page's labels."""
    report = json.loads(
        world.cli("status", "--format", "json", "--now", "2026-03-03T16:00Z", code=1)
    )
    out = {}
    for c in report["cadences"]:
        counts = {k: c[k] for k in ("enrolled", "active", "paused", "successes", "sent", "due")}
        counts.update(held=c["held"], failed=c["failed"], retrying=c["retrying"])
        counts.update({"open tasks": c["open_tasks"], "unknown": c["unknown"]})
        counts.update({f"in flight: {k}": n for k, n in c["in_flight"].items()})
        out[c["version"]] = (c["sender"], counts)
    return out


def test_overview_shows_what_status_shows_of_the_users_own_versions(
    app: Flask, world: World
) -> None:
    # Eli's cadence named like Dana's ("Dana outbound") must not show on Dana's page.
    add_trouble(world)
    status = _status_cards(world)
    for email in (DANA, ELI, BOSS):
        page = sign_in(app, world, email).get("/cadences").text
        expected = {v: counts for v, (sender, counts) in status.items() if email in (sender, BOSS)}
        assert _overview_cards(page) == expected, email
    dana = sign_in(app, world, DANA).get("/cadences").text
    paused, unknown = dana.split('id="paused"')[1].split('id="unknown"')
    assert MALLORY in paused and "paused (auto-reply)" in paused
    assert "1 paused by an auto-reply" in paused and "0 by an operator" in paused
    assert "resumes Tue 10 Mar 2026, 01:00" in paused  # 00:00Z in Amsterdam, Dana's zone
    assert "out of office (mallory@evil.example)" in paused
    (ava_intro,) = world.query(
        "SELECT sr.id, sr.message_id FROM step_runs sr JOIN enrolments e "
        "ON e.id = sr.enrolment_id WHERE e.email = ? AND sr.step_id = 'intro'",
        AVA,
    )
    assert f"#{ava_intro[0]}" in unknown and AVA in unknown
    assert html.escape(str(ava_intro[1])) in unknown and "connection lost after DATA" in unknown
    assert CY not in dana and "cyberdyne" not in dana and BEN not in dana
    eli = sign_in(app, world, ELI).get("/cadences").text
    assert CY in eli.split('id="paused"')[1] and CY in eli.split('id="unknown"')[1]
    assert "until <code>cadence enrolments resume</code>" in eli and "asked to wait" in eli
    assert AVA not in eli and MALLORY not in eli
    boss = sign_in(app, world, BOSS).get("/cadences").text
    assert all(e in boss for e in (AVA, MALLORY, CY, BEN))


# -- the pages ---------------------------------------------------------------------------


def test_queue_groups_and_filters(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    page = client.get("/").text
    assert 'id="due-today"' in page and "Call Ava" in page
    # Your zone and the contact's: 14:00Z is 15:00 in Amsterdam and 09:00 in New York.
    assert "Tue 03 Mar, 15:00" in page and "09:00 America/New_York" in page
    # Upcoming: the next days' tasks not open yet (Ava's email task, held by her call).
    upcoming = page.split('id="upcoming"')[1]
    assert "Email Ava: Personal note" in upcoming and "opens when due" in upcoming
    assert "Ben" not in upcoming and "Call Ava" not in upcoming
    planned = world.task_id(AVA, "manual")
    shown = client.get(f"/tasks/{planned}").text
    assert "This task is planned" in shown and "/done" not in shown
    assert "Call Ava" not in client.get("/?type=email").text
    assert "Call Ava" in client.get("/?type=call&cadence=Dana+outbound").text
    bad = client.get("/?type=fax")
    assert bad.status_code == 400 and "type &#39;fax&#39; is not one of" in bad.text
    other = client.get("/?cadence=Eli+outbound")
    assert other.status_code == 400 and "cadence" in other.text


def test_call_page_has_tel_link_notes_and_done_moves_the_contact_on(
    app: Flask, world: World
) -> None:
    client = sign_in(app, world, DANA)
    task = world.task_id(AVA, "call")
    page = client.get(f"/tasks/{task}").text
    assert 'href="tel:+15550100"' in page and "Ask Ava about Northwind" in page
    answer = client.post(f"/tasks/{task}/done", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    assert "marked done" in client.get(answer.headers["Location"]).text
    assert world.step(AVA, "call")[0] == "done"
    assert world.cli("run", "--once", "--now", "2026-03-04T15:00Z").count("tasks opened") == 1
    assert world.step(AVA, "manual")[0] == "open"
    again = client.post(f"/tasks/{task}/done", data={"csrf": csrf_of(page)})
    assert again.status_code == 409 and "not open" in again.text


def _email_task(world: World, client: FlaskClient) -> int:
    task = world.task_id(AVA, "call")
    client.post(f"/tasks/{task}/skip", data={"csrf": page_csrf(client)})
    world.cli("run", "--once", "--now", "2026-03-04T15:00Z")
    return world.task_id(AVA, "manual")


def test_email_task_compose_view_and_links(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    task = _email_task(world, client)
    page = client.get(f"/tasks/{task}").text
    assert 'value="Personal note"' in page
    assert "Template text of the manual email." in page
    assert "https://mail.google.com/mail/?view=cm" in page
    assert "https://outlook.office.com/mail/deeplink/compose" in page
    assert "mailto:ava@northwind.example?subject=Personal%20note" in page


SHARES = """\
cadence: 1
name: Dana shares
sender: {name: Dana, email: dana@acme.example}
contact_fields: [parts]
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  share: {subject: "Your share", body: "{{ 100 // (contact.parts | int) }} each\\n"}
steps:
  - {id: share, day: 1, email: {template: share, send: task}}
"""
ZED = "zed@zeta.example"


def test_a_task_whose_email_does_not_render_says_why_and_can_still_be_worked(
    app: Flask, world: World
) -> None:
    (world.root / "shares.yaml").write_text(SHARES, encoding="utf-8")
    (world.root / "shares.csv").write_text(f"email,parts\n{ZED},4\n", encoding="utf-8")
    world.cli("launch", str(world.root / "shares.yaml"), "--contacts",
              str(world.root / "shares.csv"), "--start", "2026-03-03T08:00Z",
              "--now", "2026-03-03T08:00Z")  # fmt: skip
    world.cli("run", "--once", "--now", "2026-03-03T15:30Z")
    # The contact's data as no launch would take it: the body now divides by zero.
    parts = "UPDATE enrolments SET contact = replace(contact, ?, ?) WHERE email = ?"
    world.execute(parts, '"parts":"4"', '"parts":"0"', ZED)
    client = sign_in(app, world, DANA)
    task = world.task_id(ZED, "share")
    page = client.get(f"/tasks/{task}")
    assert page.status_code == 400, page.text
    assert f"does not render for {ZED}: ZeroDivisionError" in page.text
    assert f"no task {task}" not in page.text and "Traceback" not in page.text
    # Skip renders nothing: the rep can still work the task.
    answer = client.post(f"/tasks/{task}/skip", data={"csrf": page_csrf(client)})
    assert answer.status_code == 303, answer.text
    assert world.step(ZED, "share")[0] == "skipped"


def _send(client: FlaskClient, task: int, *, action: str = "send", **fields: str) -> TestResponse:
    form = {"csrf": page_csrf(client), "action": action, **fields}
    return client.post(f"/tasks/{task}/send", data=form)


def test_send_now_records_the_email_for_the_runner(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    task = _email_task(world, client)
    answer = _send(client, task, subject="A note for Ava", body="Hi Ava, edited on the page.\r\n")
    assert answer.status_code == 303
    assert "the runner sends it" in client.get(answer.headers["Location"]).text
    assert world.step(AVA, "manual")[0] == "planned"
    assert not any(world.outbox.glob("*manual*"))  # nothing went out in the request
    world.cli("run", "--once", "--now", "2026-03-03T16:05Z")
    bodies = {
        str(m["Subject"]): m.get_body().get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
        for m in (
            message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in world.outbox.iterdir()
        )
    }
    assert bodies["A note for Ava"] == "Hi Ava, edited on the page.\n"


def test_schedule_sets_the_due_time_in_the_reps_zone(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    task = _email_task(world, client)
    answer = _send(
        client, task, subject="Later", body="Hi", action="schedule", at="2026-03-05T10:30"
    )
    assert answer.status_code == 303
    state, due = world.step(AVA, "manual")
    # 10:30 in Amsterdam (UTC+1 in March) is 09:30Z.
    assert (state, due) == ("planned", int(datetime(2026, 3, 5, 9, 30, tzinfo=UTC).timestamp()))


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"subject": "", "body": "x", "action": "send"}, "subject", "subject: write a subject"),
        ({"subject": "s", "body": "  ", "action": "send"}, "body", "body: the email text is empty"),
        ({"subject": "s", "body": "x", "action": "schedule"}, "at", "at: choose the date"),
        (
            {"subject": "s", "body": "x", "action": "schedule", "at": "tomorrow"},
            "at",
            "at &#39;tomorrow&#39; is not a valid WHEN",
        ),
        (
            {"subject": "s", "body": "x", "action": "schedule", "at": "2026-03-01T09:00"},
            "at",
            "at: that time has passed",
        ),
        ({"subject": "s", "body": "x", "action": "fly"}, "action", "action: press Send now"),
    ],
    ids=["no-subject", "empty-body", "no-time", "bad-time", "past-time", "bad-action"],
)
def test_bad_form_input_names_the_field_and_keeps_the_text(
    app: Flask, world: World, form: dict[str, str], field: str, message: str
) -> None:
    client = sign_in(app, world, DANA)
    task = _email_task(world, client)
    answer = client.post(f"/tasks/{task}/send", data={"csrf": page_csrf(client), **form})
    assert answer.status_code == 400
    assert f'data-field="{field}"' in answer.text and message in answer.text
    assert world.step(AVA, "manual")[0] == "open"


def test_a_subject_longer_than_is_sent_is_refused_at_once_and_kept(
    app: Flask, world: World
) -> None:
    client = sign_in(app, world, DANA)
    task = _email_task(world, client)
    subject = "S" * 20_000
    answer = _send(client, task, subject=subject, body="Hi Ava")
    assert answer.status_code == 400
    assert 'data-field="subject"' in answer.text
    assert (
        f"subject: it is 20,000 characters; at most {MAX_SUBJECT_CHARS:,} are sent" in answer.text
    )
    assert f'value="{subject}"' in answer.text and "Hi Ava</textarea>" in answer.text
    assert world.step(AVA, "manual")[0] == "open"
    # The limit is the runner's: a subject of exactly that length is queued and sent.
    longest = "S" * MAX_SUBJECT_CHARS
    assert _send(client, task, subject=longest, body="Hi Ava").status_code == 303
    world.cli("run", "--once", "--now", "2026-03-03T16:05Z")
    assert world.step(AVA, "manual")[0] == "sent"


def _scheduled_email_task(world: World, client: FlaskClient) -> int:
    task = _email_task(world, client)
    answer = _send(
        client, task, subject="Later", body="Hi", action="schedule", at="2026-03-05T10:30"
    )
    assert answer.status_code == 303
    return task


@pytest.mark.parametrize(
    "form",
    [
        {"subject": "s", "body": "x", "action": "explode"},
        {"subject": "s", "body": "x"},
        {"subject": "s", "body": "x", "action": "schedule", "at": "someday"},
        {"subject": "s", "body": "x", "action": "send"},
    ],
    ids=["explode", "no-action", "bad-at", "good"],
)
@pytest.mark.parametrize("kind", ["scheduled-email", "call"])
def test_a_send_to_a_task_that_is_not_open_says_why_whatever_the_form_held(
    app: Flask, world: World, form: dict[str, str], kind: str
) -> None:
    client = sign_in(app, world, DANA)
    task = world.task_id(AVA, "call") if kind == "call" else _scheduled_email_task(world, client)
    before = world.step(AVA, "call"), world.step(AVA, "manual")
    answer = client.post(f"/tasks/{task}/send", data={"csrf": page_csrf(client), **form})
    # The task's state is the answer (the engine's own words), not the fields of a form
    # the page does not show.
    assert answer.status_code == 409
    alert = re.search(r'<p class="error" role="alert">(.*?)</p>', answer.text, re.S)
    assert alert is not None, answer.text
    why = (
        f"task {task} is already scheduled to be sent at 2026-03-05 09:30 UTC"
        if kind == "scheduled-email"
        else f"task {task} is a call task, not an email task"
    )
    assert alert.group(1) == why and "data-field" not in answer.text
    assert (world.step(AVA, "call"), world.step(AVA, "manual")) == before


def test_contact_page_shows_enrolment_steps_thread_and_events(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    page = client.get(f"/contacts/{AVA}").text
    assert "Dana outbound" in page and "Intro for Northwind" in page and "Intro body." in page
    assert "<code>manual</code>" in page and "America/New_York" in page
    assert 'class="kind launched"' in page and 'class="kind sent"' in page


def test_contact_page_shows_a_follow_up_as_it_was_sent(app: Flask, world: World) -> None:
    # Ava is in New York: the bump's quote is dated in her zone, in the email and on the
    # page alike (the page shows the runner's own text for what went out).
    world.cli("tasks", "done", str(world.task_id(AVA, "call")), "--now", "2026-03-03T16:00Z")
    world.cli("run", "--once", "--now", "2026-03-04T15:00Z")  # the manual email task opens
    world.cli("tasks", "done", str(world.task_id(AVA, "manual")), "--now", "2026-03-04T15:30Z")
    world.cli("run", "--once", "--now", "2026-03-05T16:00Z")
    (bump,) = (
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in world.outbox.iterdir()
        if b"Bump body." in path.read_bytes() and AVA.encode() in path.read_bytes()
    )
    sent = bump.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
    quote = next(line for line in sent.splitlines() if line.endswith("wrote:"))
    assert quote.startswith("On Wed, 04 Mar 2026 at 10:30, ")  # 15:30Z in New York
    page = sign_in(app, world, DANA).get(f"/contacts/{AVA}").text
    assert "Bump body." in page
    assert html.escape(quote) in page


def test_live_feed_shows_a_reply_recorded_by_the_command(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    world.cli("event", "reply", "--contact", AVA, "--now", "2026-03-03T16:00Z")
    feed = client.get("/feed").text
    assert 'class="kind reply"' in feed and AVA in feed
    assert 'http-equiv="refresh"' in feed


def test_contact_data_with_html_is_escaped(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    task = world.task_id(MALLORY, "call")
    for path in ("/", f"/tasks/{task}", f"/contacts/{MALLORY}"):
        page = client.get(path).text
        assert HOSTILE_NAME not in page and "<b>Evil</b>" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


HOSTILE_TASKS = """\
cadence: 1
name: Dana hostile
sender: {name: Dana, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  note: {subject: "Hello {{ contact.company }}", body: "Hi {{ contact.first_name }}\\n"}
steps:
  - {id: intro, day: 1, email: {template: note, send: {at: "09:00"}}}
  - {id: note, day: 1, email: {template: note, send: task}}
"""
EVE = "eve@evil.example"


def test_subjects_and_titles_with_newlines_show_as_one_line(app: Flask, world: World) -> None:
    contacts = world.root / "hostile.json"
    contacts.write_text(
        json.dumps(
            [{"email": EVE, "first_name": "Eve\nBcc: victim@evil.example",
              "company": "Acme\nX-Injected: yes"}]
        ),
        encoding="utf-8",
    )  # fmt: skip
    (world.root / "hostile.yaml").write_text(HOSTILE_TASKS, encoding="utf-8")
    world.cli("launch", str(world.root / "hostile.yaml"), "--contacts", str(contacts),
              "--start", "2026-03-03T08:00Z", "--now", "2026-03-03T08:00Z")  # fmt: skip
    world.cli("run", "--once", "--now", "2026-03-03T15:30Z")  # the intro goes out
    world.cli("run", "--once", "--now", "2026-03-03T15:31Z")  # the email task opens
    client = sign_in(app, world, DANA)
    task = world.task_id(EVE, "note")
    subject = "Hello Acme X-Injected: yes"
    title = f"Email Eve Bcc: victim@evil.example: {subject}"
    queue = html.unescape(client.get("/").text)
    assert f">{title}</a>" in queue
    page = client.get(f"/tasks/{task}").text
    assert f"</span> {html.escape(title)}</h1>" in page
    assert f'name="subject" value="{html.escape(subject)}"' in page
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]
    (gmail,) = [h for h in hrefs if h.startswith("https://mail.google.com/")]
    (mailto,) = [h for h in hrefs if h.startswith("mailto:")]
    assert "&su=Hello%20Acme%20X-Injected%3A%20yes&" in gmail
    assert "?subject=Hello%20Acme%20X-Injected%3A%20yes&" in mailto
    assert mailto.endswith("&body=Hi%20Eve%0D%0ABcc%3A%20victim%40evil.example%0D%0A")
    # The contact page shows the intro that went out with its subject as it was sent.
    contact = client.get(f"/contacts/{EVE}").text
    assert f"<strong>{html.escape(subject)}</strong>" in contact


# -- one-click unsubscribe -----------------------------------------------------------------


def test_one_click_post_unsubscribes_without_cookie_or_csrf(app: Flask, world: World) -> None:
    client = app.test_client()
    token = world.token(AVA)
    assert "Unsubscribe" in client.get(f"/u/{token}").text
    answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    assert world.query("SELECT state FROM enrolments WHERE email = ?", AVA) == [("unsubscribed",)]
    assert world.query("SELECT reason FROM suppressions WHERE email = ?", AVA) == [("unsubscribe",)]
    signal = "SELECT source FROM events WHERE kind = 'unsubscribe' AND email = ?"
    assert world.query(signal, AVA) == [("web",)]
    again = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert world.query(signal, AVA) == [("web",)]  # recorded once


def test_unknown_unsubscribe_token_is_404_and_changes_nothing(app: Flask, world: World) -> None:
    before = world.query(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM suppressions), "
        "(SELECT group_concat(state) FROM enrolments)"
    )
    client = app.test_client()
    assert client.get("/u/not-a-token").status_code == 404
    answer = client.post("/u/not-a-token", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 404
    assert (
        world.query(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM suppressions), "
            "(SELECT group_concat(state) FROM enrolments)"
        )
        == before
    )


def test_a_lower_cased_unsubscribe_token_gets_the_same_answer_on_get_and_post(
    app: Flask, world: World
) -> None:
    # A mail system may lower-case the plus address the token travels in (§8).
    world.execute(
        "UPDATE enrolments SET unsubscribe_token = 'Ava-Token-MiXeD' WHERE email = ?", AVA
    )
    client = app.test_client()
    page = client.get("/u/ava-token-mixed")
    assert page.status_code == 200 and "Stop every email" in page.text
    answer = client.post("/u/ava-token-mixed", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    assert world.query("SELECT state FROM enrolments WHERE email = ?", AVA) == [("unsubscribed",)]


def test_a_token_two_addresses_hold_but_for_its_case_is_unknown_on_get_and_post(
    app: Flask, world: World
) -> None:
    world.execute("UPDATE enrolments SET unsubscribe_token = 'Same-Token' WHERE email = ?", AVA)
    world.execute("UPDATE enrolments SET unsubscribe_token = 'SAME-token' WHERE email = ?", BEN)
    client = app.test_client()
    assert client.get("/u/same-token").status_code == 404
    answer = client.post("/u/same-token", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 404
    states = "SELECT state FROM enrolments WHERE email IN (?, ?)"
    assert world.query(states, AVA, BEN) == [("active",), ("active",)]


def test_unsubscribe_post_without_the_one_click_body_is_400(app: Flask, world: World) -> None:
    answer = app.test_client().post(f"/u/{world.token(AVA)}", data={})
    assert answer.status_code == 400 and "List-Unsubscribe" in answer.text
    assert world.query("SELECT state FROM enrolments WHERE email = ?", AVA) == [("active",)]


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/signin", "/u/nope", "/", "/feed", "/tasks/99999", "/static/cadence.css"]
)
def test_every_response_carries_the_security_headers(app: Flask, world: World, path: str) -> None:
    client = sign_in(app, world, DANA)
    for each in (client, app.test_client()):
        with each.get(path) as answer:
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["X-Frame-Options"] == "DENY"
            csp = answer.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


def test_inmail_page_links_only_an_https_linkedin_url(app: Flask, world: World) -> None:
    client = sign_in(app, world, DANA)
    for email in (AVA, MALLORY):
        client.post(f"/tasks/{world.task_id(email, 'call')}/done", data={"csrf": page_csrf(client)})
    world.cli("run", "--once", "--now", "2026-03-04T15:00Z")
    for email in (AVA, MALLORY):
        world.cli(
            "tasks", "skip", str(world.task_id(email, "manual")), "--now", "2026-03-04T15:10Z"
        )
    for day in ("05", "06", "07"):
        world.cli("run", "--once", "--now", f"2026-03-{day}T15:30Z")
    assert world.step(AVA, "li")[0] == world.step(MALLORY, "li")[0] == "open"
    ava = client.get(f"/tasks/{world.task_id(AVA, 'li')}").text
    assert '<a class="primary-link" href="https://www.linkedin.com/in/ava"' in ava
    assert "Connect" in ava
    mallory = client.get(f"/tasks/{world.task_id(MALLORY, 'li')}").text
    assert "javascript:alert(1)" in mallory and 'href="javascript:' not in mallory


def test_a_contact_in_two_reps_cadences_shows_each_rep_only_their_own(
    app: Flask, world: World
) -> None:
    shared = world.root / "shared.csv"
    shared.write_text(f"email,first_name,company\n{AVA},Ava,Northwind\n", encoding="utf-8")
    launch = ["launch", str(world.root / "eli.yaml"), "--contacts", str(shared),
              "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
              "--allow-overlap"]  # fmt: skip  # launches are exclusive (§11)
    assert "enrolled 1" in world.cli(*launch)
    world.cli("run", "--once", "--now", "2026-03-02T15:00Z")
    dana = sign_in(app, world, DANA)
    page = dana.get(f"/contacts/{AVA}").text
    assert "Dana outbound" in page and "Eli outbound" not in page
    assert "Eli outbound" not in dana.get("/feed").text
    eli = sign_in(app, world, ELI).get(f"/contacts/{AVA}").text
    assert "Eli outbound" in eli and "Dana outbound" not in eli


# -- the same Command Center on PostgreSQL -----------------------------------------------


def test_the_command_center_on_postgresql_shows_what_it_shows_on_sqlite(
    app: Flask, world: World, postgres_url: str
) -> None:
    """The world copied to PostgreSQL (`cadence store migrate`): each user's queue, feed
    and contact page are the same pages there (upcoming tasks, the live feed, tokens)."""
    add_trouble(world)  # the overview with every count and list `status` has
    world.cli("store", "migrate", "--to", postgres_url)
    on_pg = create_app(postgres_url, base="http://127.0.0.1:8080", clock=lambda: NOW)
    try:
        for email in (DANA, ELI, BOSS):
            pages: list[list[str]] = []
            for each in (app, on_pg):
                client = each.test_client()
                env = {"CADENCE_DB": postgres_url} if each is on_pg else None
                path = world.cli("users", "link", email, env=env).splitlines()[0]
                path = path.removeprefix("http://127.0.0.1:8080")
                page = client.get(path)
                assert client.post(path, data={"csrf": csrf_of(page.text)}).status_code == 303
                got = []
                for where in ("/", "/feed", f"/contacts/{AVA}", "/cadences"):
                    answer = client.get(where)
                    got.append(f"{answer.status_code} " + re.sub(r'value="[^"]*"', "", answer.text))
                pages.append(got)
            assert pages[0] == pages[1], email
        assert "Call Ava" in pages[0][0] and "sent" in pages[0][1]
        assert on_pg.test_client().get(f"/u/{world.token(AVA)}").status_code == 200
        assert on_pg.test_client().get("/u/not-a-token").status_code == 404
    finally:
        close_app(on_pg)
