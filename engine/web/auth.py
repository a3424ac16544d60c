"""Sessions, CSRF and the public routes of the Command Center.

The session cookie holds a random id (its hash is stored, with the session's CSRF token);
it is HttpOnly and SameSite=Lax, and Secure when CADENCE_BASE_URL is https. Every POST
of a signed-in page must carry the session's CSRF token in the `csrf` field (403 without
it). The sign-in form, before any session exists, is guarded by a double-submit cookie.
Only the sign-in pages, /healthz, /u/… (one-click unsubscribe) and the stylesheet answer
without a session: a GET is sent to the sign-in page, anything else gets 401.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime

from flask import Flask, Response, abort, g, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from . import engine_calls

SESSION_COOKIE = "cadence_session"
SIGNIN_COOKIE = "cadence_signin"  # double-submit token of the sign-in form
PUBLIC_ENDPOINTS = frozenset(
    {"healthz", "signin", "signin_link", "signin_post", "unsubscribe_page", "unsubscribe_post",
     "static"}
)  # fmt: skip


def real_now() -> datetime:
    """Sessions and links expire by the wall clock, whatever `serve --now` pretends."""
    return datetime.now(UTC)


def backend() -> engine_calls.Backend:
    from flask import current_app

    backends: engine_calls.Backends = current_app.extensions["cadence"]
    return backends.get()


def require_session() -> BaseResponse | None:
    """before_request: the signed-in user in `g.user`, else redirect or 401; CSRF on POST."""
    g.user = None
    g.csrf = ""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    session_id = request.cookies.get(SESSION_COOKIE, "")
    found = engine_calls.current_session(backend(), session_id, real_now()) if session_id else None
    if found is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("signin", next=request.full_path.rstrip("?")), code=303)
        abort(401)
    g.user = found.user
    g.csrf = found.csrf
    g.session_id = session_id
    if request.method == "POST" and not hmac.compare_digest(
        request.form.get("csrf", ""), found.csrf
    ):
        abort(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return None


def signin_form_token() -> str:
    """The sign-in form's token: the browser's cookie when it has one, else a new one."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


def signin_form_ok() -> bool:
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(request.form.get("csrf", ""), cookie)


def set_cookie(app: Flask, response: BaseResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=app.config["CADENCE_COOKIE_PATH"],
        httponly=True,
        samesite="Lax",
        secure=bool(app.config["CADENCE_SECURE_COOKIES"]),
    )


def security_headers(response: Response) -> Response:
    """after_request: what every response carries, public or not."""
    h = response.headers
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    # Sign-in and unsubscribe URLs carry secrets: never hand them to another site.
    h["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "static":
        h["Cache-Control"] = "no-store"
    return response
