"""The Command Center in headless Chromium against a real `cadence serve` process:
a rep signs in by the link, sees only their tasks, works a call (R5), sends an edited
email task that the runner delivers while the follow-up quotes the template (R3),
schedules another, and sees a reply recorded by `cadence event` in the live feed."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from tests.helpers.serve_process import chromium_page, serving
from tests.helpers.web_world import AVA, DANA, ELI, MALLORY, World, add_trouble, make_world


def _outbox(world: World) -> dict[str, str]:
    out = {}
    for path in world.outbox.iterdir():
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        body = msg.get_body()
        assert body is not None
        to = msg["To"].addresses[0].addr_spec
        out[f"{to} {msg['Subject']}"] = str(body.get_content()).replace("\r\n", "\n")
    return out


def _sign_in(page: object, link: str) -> None:
    page.goto(link)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/")  # type: ignore[attr-defined]


def test_a_reps_day_in_the_command_center(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with chromium_page() as page, serving(world.env, "--now", "2026-03-03T16:00Z") as base:
        # Signed in by the one-time link, Dana sees her contacts' calls and not Eli's.
        _sign_in(page, world.link(DANA, base))
        queue = page.locator("main").inner_text()
        assert "Call Ava" in queue and "Call Ben" not in queue
        assert page.locator("text=Sign in").count() == 0

        # A call done on the page: the contact's next step is no longer held (R5).
        page.get_by_role("link", name="Call Ava").click()
        assert page.locator('a[href="tel:+15550100"]').count() == 1
        page.get_by_role("button", name="Done").click()
        assert "marked done" in page.locator(".notice").inner_text()
        assert world.step(AVA, "call")[0] == "done"
        page.get_by_role("link", name="Call <script>alert(1)</script>").click()
        page.get_by_role("button", name="Done").click()
        run = world.cli("run", "--once", "--now", "2026-03-04T15:00Z")
        assert "tasks opened 2" in run
        assert world.step(AVA, "manual")[0] == "open"

        # The email task: compose view with the template, edited, sent from the page.
        page.goto(base + "/")
        page.get_by_role("link", name="Email Ava: Personal note").click()
        body = page.locator("textarea[name=body]")
        assert "Template text of the manual email." in body.input_value()
        assert page.get_by_role("link", name="Gmail").get_attribute("href", timeout=5000)
        body.fill("Hi Ava, this line is only in the email I sent by hand.\n")
        page.get_by_role("button", name="Send now").click()
        assert "the runner sends it" in page.locator(".notice").inner_text()
        assert world.step(AVA, "manual")[0] == "planned"
        world.cli("run", "--once", "--now", "2026-03-04T15:05Z")
        sent = _outbox(world)
        assert sent[f"{AVA} Personal note"].startswith("Hi Ava, this line is only in the email")
        # R3: the next follow-up quotes the template, never the rep's edits.
        world.cli("run", "--once", "--now", "2026-03-05T16:00Z")
        follow_up = _outbox(world)[f"{AVA} Re: Personal note"]
        assert "> Template text of the manual email." in follow_up
        assert "only in the email I sent by hand" not in follow_up

        # Another email task scheduled for Friday 10:30, Dana's time (09:30Z).
        page.goto(base + "/?type=email")
        page.get_by_role("link", name="Email <script>alert(1)</script>: Personal note").click()
        page.locator("input[name=at]").fill("2026-03-06T10:30")
        page.get_by_role("button", name="Schedule").click()
        assert "scheduled" in page.locator(".notice").inner_text()
        due = int(datetime(2026, 3, 6, 9, 30, tzinfo=UTC).timestamp())
        assert world.step(MALLORY, "manual") == ("planned", due)

        # A reply recorded by the command shows in the live feed.
        world.cli("event", "reply", "--contact", MALLORY, "--now", "2026-03-05T17:00Z")
        page.get_by_role("link", name="Live feed").click()
        first = page.locator("ul.feed li").first.inner_text()
        assert "reply" in first and MALLORY in first

        # Eli, signed in the same way, sees only his own.
        page.get_by_role("button", name="Sign out").click()
        _sign_in(page, world.link(ELI, base))
        assert "Call Ben" in page.locator("main").inner_text()
        assert "Ava" not in page.locator("main").inner_text()


def test_the_cadences_overview_shows_status_with_its_troubles_marked(tmp_path: Path) -> None:
    """Dana's overview in Chromium: her version's counts as `status` has them, failed and
    unknown marked by the stylesheet, her auto-reply pause and unknown send, nothing of
    Eli's cadence of the same name."""
    world = make_world(tmp_path)
    add_trouble(world)
    with chromium_page() as page, serving(world.env, "--now", "2026-03-03T16:00Z") as base:
        _sign_in(page, world.link(DANA, base))
        page.get_by_role("link", name="Cadences").click()
        main = page.locator("main").inner_text()
        assert page.locator("section.version").count() == 1
        assert "paused (auto-reply)" in main and MALLORY in main and AVA in main
        assert "cyberdyne" not in main
        failed = page.locator("section.version .stats div.bad", has_text="failed")
        plain = page.locator("section.version .stats div", has_text="enrolled")
        assert failed.inner_text().split() == ["1", "failed"]
        colour = "el => getComputedStyle(el).backgroundColor"
        assert failed.evaluate(colour) != plain.evaluate(colour)
