"""The Command Center's routes: the task queue, task pages, contacts, the live feed, the
per-cadence overview, sign-in, and the public one-click unsubscribe endpoint (SPEC §9).

Server-rendered Jinja2 pages that work without JavaScript. Every engine call goes through
`engine.web.engine_calls`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, g, make_response, redirect, render_template, request
from flask import url_for as flask_url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from ..calendar import zone
from ..delivery import clean, over_limits
from ..errors import CadenceError, NotFound
from ..plan import Action
from ..store import MAX_ROW_ID
from ..store.users import User
from ..users import SESSION_SECONDS, SIGN_IN_SECONDS, base_url
from ..when import parse_when
from . import auth, engine_calls

TASK_TYPES = {
    "email": Action.EMAIL_TASK,
    "call": Action.CALL_TASK,
    "inmail": Action.INMAIL_TASK,
    "custom": Action.CUSTOM_TASK,
}
TYPE_OF_ACTION = {str(v): k for k, v in TASK_TYPES.items()}

# What a redirect after an action says; only keys travel in the URL, never text.
NOTICES = {
    "done": "Task {task} marked done. The contact's next steps move on.",
    "skipped": "Task {task} skipped. The contact's next steps move on.",
    "queued": "Email of task {task} recorded: the runner sends it at its next pass "
    "(`cadence run`), with your text.",
    "scheduled": "Email of task {task} scheduled: the runner sends it at the time you chose.",
    "signed-out": "You are signed out.",
}


@dataclass(frozen=True, slots=True)
class FormErrors:
    """Bad form input, one message per field name."""

    fields: dict[str, str]


def create_app(
    db_path: str, *, base: str | None = None, clock: Callable[[], datetime] | None = None
) -> Flask:
    """The Command Center on the state store `db_path` (a SQLite file or a PostgreSQL URL,
    as CADENCE_DB).

    `base` is CADENCE_BASE_URL (links, the Secure cookie flag); `clock` the domain's "now"
    (`serve --now`); sessions and links always expire by the wall clock.
    """
    app = Flask(__name__, static_folder="static", template_folder="templates")
    links = base_url(base)
    app.config.update(
        CADENCE_BASE_URL=links,
        CADENCE_SECURE_COOKIES=links.startswith("https://"),
        # Cookies go only to the paths the Command Center answers on (its base URL's
        # path behind a reverse proxy), not to other sites on the same host.
        CADENCE_COOKIE_PATH=urlsplit(links).path.rstrip("/") or "/",
        MAX_CONTENT_LENGTH=1024 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.extensions["cadence"] = engine_calls.Backends(db_path)
    now = clock or (lambda: datetime.now(UTC))
    app.before_request(auth.require_session)
    app.after_request(auth.security_headers)
    _filters(app)
    _routes(app, now)
    _errors(app)
    return app


def close_app(app: Flask) -> None:
    backends: engine_calls.Backends = app.extensions["cadence"]
    backends.close()


# -- presentation helpers --------------------------------------------------------------


def _filters(app: Flask) -> None:
    def local(instant: datetime | int | None, zone_name: str, fmt: str = "%a %d %b, %H:%M") -> str:
        if instant is None:
            return ""
        if isinstance(instant, int):
            instant = datetime.fromtimestamp(instant, UTC)
        return instant.astimezone(zone(zone_name)).strftime(fmt)

    def task_type(action: str) -> str:
        return TYPE_OF_ACTION.get(action, action)

    app.jinja_env.filters["local"] = local
    app.jinja_env.filters["task_type"] = task_type
    app.jinja_env.globals["TASK_TYPES"] = TASK_TYPES
    app.jinja_env.globals["SIGN_IN_MINUTES"] = SIGN_IN_SECONDS // 60


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = make_response(render_template(template, user=g.user, csrf=g.csrf, **context))
    response.status_code = status
    return response


def _notice() -> str:
    key = request.args.get("notice", "")
    task = request.args.get("task", "")
    text = NOTICES.get(key, "")
    return text.format(task=task if task.isdigit() else "") if text else ""


UPCOMING_DAYS = 7


def _sections(
    tasks: list[Any], coming: list[Any], user: User, now: datetime
) -> dict[str, list[Any]]:
    """Overdue (before today), due today and upcoming, by the rep's own calendar day.

    Upcoming also holds the next UPCOMING_DAYS days' tasks the runner has not opened yet.
    """
    tz = zone(user.timezone)
    today = now.astimezone(tz).date()
    out: dict[str, list[Any]] = {"Overdue": [], "Due today": [], "Upcoming": []}
    for t in tasks:
        day = t.due.astimezone(tz).date()
        key = "Overdue" if day < today else "Due today" if day == today else "Upcoming"
        out[key].append(t)
    out["Upcoming"] = sorted(out["Upcoming"] + coming, key=lambda t: (t.due, t.id))
    return out


def _upcoming_end(user: User, now: datetime) -> datetime:
    """The end of the rep's day UPCOMING_DAYS days from today."""
    tz = zone(user.timezone)
    last = now.astimezone(tz).date() + timedelta(days=UPCOMING_DAYS + 1)
    return datetime.combine(last, time(0), tzinfo=tz)


# -- routes ----------------------------------------------------------------------------


def _routes(app: Flask, now: Callable[[], datetime]) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        try:
            engine_calls.healthy(auth.backend())
        except CadenceError as exc:  # not the caller's fault: this server cannot work now
            text = f"unavailable: the state store cannot be read: {exc}\n"
            return Response(text, status=503, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    # -- sign-in ---------------------------------------------------------------------

    @app.get("/signin")
    def signin() -> Response:
        notice = NOTICES["signed-out"] if request.args.get("notice") == "signed-out" else ""
        return make_response(
            render_template("signin.html", user=None, csrf="", token=None, notice=notice)
        )

    @app.get("/signin/<token>")
    def signin_link(token: str) -> Response:
        form_token = auth.signin_form_token()
        # The link is spent by the button, not by opening it: mail scanners that fetch
        # every link in a message must not burn a rep's sign-in.
        response = make_response(
            render_template("signin.html", user=None, csrf=form_token, token=token)
        )
        auth.set_cookie(app, response, auth.SIGNIN_COOKIE, form_token, SIGN_IN_SECONDS)
        return response

    @app.post("/signin/<token>")
    def signin_post(token: str) -> BaseResponse:
        if not auth.signin_form_ok():
            abort(403, "the sign-in form's token is missing or wrong: open the link again")
        started = engine_calls.start_session(auth.backend(), token, auth.real_now())
        if started is None:
            refused = make_response(
                render_template("signin.html", user=None, csrf="", token=None, refused=True)
            )
            refused.status_code = 403
            return refused
        session_id, _ = started
        target = request.script_root + _safe_next(request.args.get("next", ""))
        response: BaseResponse = redirect(target, code=303)
        auth.set_cookie(app, response, auth.SESSION_COOKIE, session_id, SESSION_SECONDS)
        response.delete_cookie(auth.SIGNIN_COOKIE, path=app.config["CADENCE_COOKIE_PATH"])
        return response

    @app.post("/signout")
    def signout() -> BaseResponse:
        engine_calls.end_session(auth.backend(), g.session_id)
        response = redirect(flask_url_for("signin", notice="signed-out"), code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path=app.config["CADENCE_COOKIE_PATH"])
        return response

    # -- the queue and tasks ---------------------------------------------------------

    @app.get("/")
    def queue() -> Response:
        b = auth.backend()
        kind = request.args.get("type", "")
        cadence = request.args.get("cadence", "")
        names = engine_calls.cadence_names(b, g.user)
        errors: dict[str, str] = {}
        if kind and kind not in TASK_TYPES:
            errors["type"] = f"type {kind!r} is not one of: {', '.join(TASK_TYPES)}"
        if cadence and cadence not in names:
            errors["cadence"] = f"cadence {cadence!r} is not one you can see"
        if errors:
            return _page(
                "queue.html", 400, sections={}, names=names, kind=kind, cadence=cadence,
                errors=errors, notice="", now=now(),
            )  # fmt: skip
        action = TASK_TYPES[kind] if kind else None
        tasks = engine_calls.queue(b, g.user, cadence=cadence or None, action=action)
        coming = engine_calls.coming(
            b, g.user, cadence=cadence or None, action=action, until=_upcoming_end(g.user, now())
        )
        return _page(
            "queue.html", sections=_sections(tasks, coming, g.user, now()), names=names,
            kind=kind, cadence=cadence, errors={}, notice=_notice(), now=now(), count=len(tasks),
            upcoming_days=UPCOMING_DAYS,
        )  # fmt: skip

    def task_response(task_id: int, status: int = 200, **extra: Any) -> Response:
        page = engine_calls.task_page(auth.backend(), g.user, task_id)
        context: dict[str, Any] = {
            "page": page,
            "t": page.task,
            "errors": {},
            "subject": page.task.subject,
            "body": page.task.body,
            "at": "",
            "problem": "",
        }
        context.update(extra)
        return _page("task.html", status, **context)

    @app.get(f"/tasks/<int(min=1, max={MAX_ROW_ID}):task_id>")
    def task(task_id: int) -> Response:
        return task_response(task_id)

    @app.post(f"/tasks/<int(min=1, max={MAX_ROW_ID}):task_id>/<any(done, skip):outcome>")
    def finish(task_id: int, outcome: str) -> BaseResponse:
        state = "done" if outcome == "done" else "skipped"
        try:
            engine_calls.finish_task(auth.backend(), g.user, task_id, state, now())
        except NotFound:
            raise  # the 404 page
        except CadenceError as exc:  # e.g. done already, in another tab: say so on the task
            return task_response(task_id, 409, problem=exc.message)
        return redirect(flask_url_for("queue", notice=state, task=task_id), code=303)

    @app.post(f"/tasks/<int(min=1, max={MAX_ROW_ID}):task_id>/send")
    def send(task_id: int) -> BaseResponse:
        try:
            engine_calls.check_sendable_task(auth.backend(), g.user, task_id)
        except NotFound:
            raise  # the 404 page
        except CadenceError as exc:  # not an open email task: that is the answer, whatever
            return task_response(task_id, 409, problem=exc.message)  # the form held
        subject = request.form.get("subject", "")
        body = request.form.get("body", "").replace("\r\n", "\n")
        action = request.form.get("action", "")
        at_text = request.form.get("at", "").strip()
        errors: dict[str, str] = {}
        if not subject.strip():
            errors["subject"] = "subject: write a subject line; it is empty"
        elif "\n" in subject or "\r" in subject:
            errors["subject"] = "subject: must be one line"
        if not body.strip():
            errors["body"] = "body: the email text is empty; write it, or skip the task"
        for field, reason in over_limits(clean(subject), body).items():
            errors.setdefault(field, f"{field}: it {reason}; shorten it")
        when = now()
        if action == "schedule":
            if not at_text:
                errors["at"] = "at: choose the date and time to send it, or use Send now"
            else:
                try:
                    when = parse_when(at_text, g.user.timezone, now=now(), option="at")
                except CadenceError as exc:
                    errors["at"] = f"{exc.message} (use YYYY-MM-DD HH:MM, your time)"
                else:
                    if when <= now():
                        errors["at"] = "at: that time has passed; choose a later one or Send now"
        elif action != "send":
            errors["action"] = "action: press Send now or Schedule"
        if errors:
            return task_response(
                task_id, 400, errors=errors, subject=subject, body=body, at=at_text
            )
        try:
            engine_calls.send_task(
                auth.backend(), g.user, task_id, subject=subject.strip(), body=body, at=when
            )
        except NotFound:
            raise  # the 404 page
        except CadenceError as exc:  # not open any more: say so, keep the rep's text
            return task_response(task_id, 409, problem=exc.message, subject=subject, body=body)
        notice = "scheduled" if action == "schedule" else "queued"
        return redirect(flask_url_for("queue", notice=notice, task=task_id), code=303)

    # -- contacts, feed, overview ----------------------------------------------------

    @app.get("/contacts/<path:email>")
    def contact(email: str) -> Response:
        page = engine_calls.contact_page(auth.backend(), g.user, email)
        return _page("contact.html", page=page, now=now())

    @app.get("/feed")
    def feed() -> Response:
        return _page("feed.html", events=engine_calls.feed(auth.backend(), g.user))

    @app.get("/cadences")
    def overview() -> Response:
        return _page("overview.html", report=engine_calls.overview(auth.backend(), g.user, now()))

    # -- one-click unsubscribe (public) ----------------------------------------------

    @app.get("/u/<token>")
    def unsubscribe_page(token: str) -> Response:
        if not engine_calls.unsubscribe_token_known(auth.backend(), token):
            abort(404, "this unsubscribe link is not known (it may be mistyped)")
        return make_response(render_template("unsubscribe.html", user=None, csrf="", done=False))

    @app.post("/u/<token>")
    def unsubscribe_post(token: str) -> Response:
        if request.form.get("List-Unsubscribe") != "One-Click":
            abort(400, "List-Unsubscribe: the body must be List-Unsubscribe=One-Click (RFC 8058)")
        try:
            engine_calls.unsubscribe(auth.backend(), token, now())
        except NotFound:
            abort(404, "this unsubscribe link is not known (it may be mistyped)")
        return make_response(render_template("unsubscribe.html", user=None, csrf="", done=True))


# A path (and query) of this site, in URI characters only (RFC 3986): no whitespace or
# control character, which browsers and werkzeug drop ("/\t/evil.example" would become
# "//evil.example", another site) or refuse in a header (a newline: a server error).
_SITE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*")


def _safe_next(target: str) -> str:
    """Only a path on this site: an open redirect would make sign-in links phishing tools."""
    return target if _SITE_PATH.fullmatch(target) else "/"


def _errors(app: Flask) -> None:
    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        return _error(404, "Not found", exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(CadenceError)
    def cadence_error(exc: CadenceError) -> Response:
        return _error(400, "Cannot do that", str(exc))


def _error(status: int, title: str, message: str) -> Response:
    user = getattr(g, "user", None)
    response = make_response(
        render_template(
            "error.html",
            user=user,
            csrf=getattr(g, "csrf", ""),
            title=title,
            message=message,
            status=status,
        )
    )
    response.status_code = status
    return response
