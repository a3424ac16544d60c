"""The `cadence` command line: parse flags, call `engine`, print, exit. Nothing more."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable
from contextlib import closing
from typing import Any

import click

from .engine.errors import CadenceError

STOPPED_BY_SIGNAL = "stopped by a signal: what was not sent is due again at the next run"
BUG_HINT = (
    "this is a bug in cadence-engine; rerun with CADENCE_DEBUG=1 for the traceback "
    "and include it in a bug report"
)


def use_color() -> bool | None:
    """None lets click decide (colour on a terminal); NO_COLOR switches it off."""
    return False if os.environ.get("NO_COLOR") else None


class CadenceGroup(click.Group):
    """Turns every error into its documented exit code: 1 findings, 2 usage, 3 internal."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            rv = super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except CadenceError as exc:
            click.echo(f"error: {exc}", err=True, color=use_color())
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # `cadence … | head` is normal use: stop quietly, like any Unix filter. Point
            # stdout at /dev/null so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            ctx.exit(0)
        except Exception as exc:
            if os.environ.get("CADENCE_DEBUG"):
                traceback.print_exc()
            click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo(f"  hint: {BUG_HINT}", err=True)
            ctx.exit(3)
        if isinstance(rv, int):
            ctx.exit(rv)
        return rv


@click.group(cls=CadenceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadence-engine", prog_name="cadence")
def cadence() -> None:
    """Declarative YAML sales cadences: validate, plan, launch and run them."""


# --- cadence files: validate, fmt, schema ---
# Imports of engine modules stay inside the commands: `cadence --help` and every other
# command start without loading YAML, JSON Schema or Jinja.

FINDING_FORMATS = ("text", "json", "github", "sarif")


@cadence.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(FINDING_FORMATS),
    default=None,
    help="Output format. Default: github when GITHUB_ACTIONS=true, else text.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
def validate_command(paths: tuple[str, ...], output_format: str | None, strict: bool) -> int:
    """Check cadence files (files, folders or globs) against every rule.

    Exit codes: 0 clean, 1 findings, 2 usage error (e.g. no such path), 3 internal error.
    """
    import sys

    from .engine.formats.findings import ReportOptions, reporter
    from .engine.validate import expand_paths, validate_paths

    if output_format is None:
        output_format = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    report = validate_paths(expand_paths(paths))
    on_terminal = sys.stdout.isatty()
    color = on_terminal and not os.environ.get("NO_COLOR")
    options = ReportOptions(color=color, snippets=on_terminal)
    click.echo(reporter(output_format)(report, options), nl=False, color=color)
    return 1 if report.failed(strict=strict) else 0


@cadence.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of cadence files (for editors and SchemaStore)."""
    from .engine.schema import schema_text

    click.echo(schema_text(), nl=False)


@cadence.command("fmt")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 naming files to reformat.")
def fmt_command(paths: tuple[str, ...], check: bool) -> int:
    """Rewrite cadence files in the canonical layout, keeping comments."""
    from .engine.fmt import format_paths
    from .engine.validate import expand_paths

    changed, problems = format_paths(expand_paths(paths), write=not check)
    for problem in problems:
        click.echo(problem, err=True)
    for path in changed:
        click.echo(f"would reformat {path}" if check else f"reformatted {path}")
    if problems:
        return 1
    return 1 if check and changed else 0


# --- runner: launch, run, tasks, event, status, resolve ---
# Thin wrappers over engine.launch / runner / tasks / signals / status. Every command that
# touches state takes --db (CADENCE_DB, default ./cadence.db); those that send take
# --transport (CADENCE_TRANSPORT, default outbox:./outbox).

# A task's ID as the stores hold it (engine.store.MAX_ROW_ID): a larger number is a usage
# error here, not an overflow inside the store.
ROW_ID = click.IntRange(1, 9_223_372_036_854_775_807)

db_option = click.option(
    "--db",
    envvar="CADENCE_DB",
    default="./cadence.db",
    show_default=True,
    help="State store: a SQLite file or postgresql://… (env CADENCE_DB).",
)
transport_option = click.option(
    "--transport",
    envvar="CADENCE_TRANSPORT",
    default="outbox:./outbox",
    show_default=True,
    help="outbox:DIR, smtp://host:port (STARTTLS) or smtps://host:port (env CADENCE_TRANSPORT).",
)
now_option = click.option(
    "--now",
    "now_text",
    default=None,
    metavar="WHEN",
    help="Pretend it is WHEN (demos, tests, back-fills). Naive times are UTC.",
)


def _now(text: str | None) -> Any:
    from datetime import UTC, datetime

    from .engine.when import parse_when

    real = datetime.now(UTC)
    return real if text is None else parse_when(text, "UTC", now=real, option="--now")


def _stderr_is_tty() -> bool:
    import sys

    return sys.stderr.isatty()


def _progress(label: str) -> Any:
    if not _stderr_is_tty():
        return None
    return lambda n: click.echo(f"\r{label} {n}…", err=True, nl=False)


class _RunProgress:
    """A progress bar on stderr for each `run_once` (one per --every fire).

    The runner calls it with its running report after each claim and each message; the
    bar's length is what was dealt with so far plus what `status` still counts as due
    (a run can find more: steps that become reachable as earlier ones are sent).
    """

    def __init__(self, store: Any, clock: Any) -> None:
        self.store = store
        self.clock = clock
        self._report: Any = None
        self._bar: Any = None
        self._shown = 0
        self._last = 0.0

    def __call__(self, report: Any) -> None:
        import sys
        import time

        if report is not self._report:
            self.close()
            self._report = report
            due = sum(v.due for v in self.store.status(self.clock.seconds()))
            self._bar = click.progressbar(
                length=max(report.handled + due, 1), label="running", file=sys.stderr
            )
            self._bar.render_progress()
        bar = self._bar
        now = time.monotonic()
        if now - self._last < 0.1 and report.handled < bar.length:
            return  # a terminal does not need ten thousand redraws
        self._last = now
        if report.handled > bar.length:
            bar.length = report.handled
        bar.update(report.handled - self._shown)
        self._shown = report.handled

    def close(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()
        self._bar = None
        self._report = None
        self._shown = 0


CONTACT_FORMATS = ("csv", "json", "jsonl", "yaml")


_CONTACTS_HELP = "Contact list: CSV with a header, JSON, JSONL or YAML (by extension)."
contacts_required_option = click.option(
    "--contacts",
    "contacts_path",
    required=True,
    type=click.Path(dir_okay=False),
    help=_CONTACTS_HELP,
)
contacts_optional_option = click.option(
    "--contacts",
    "contacts_path",
    default=None,
    type=click.Path(dir_okay=False),
    help=_CONTACTS_HELP,
)
contacts_format_option = click.option(
    "--contacts-format",
    type=click.Choice(CONTACT_FORMATS),
    default=None,
    help="Read the contact list as this format whatever its extension.",
)


@cadence.command("launch")
@click.argument("cadence_path", metavar="CADENCE", type=click.Path(dir_okay=False))
@contacts_required_option
@contacts_format_option
@click.option("--start", default="now", show_default=True, metavar="now|WHEN")
@click.option("--send-at", default=None, metavar="WHEN|HH:MM", help="Send time of day 1's email.")
@click.option("--skip-invalid", is_flag=True, help="Leave bad contact rows out, enrol the rest.")
@click.option(
    "--allow-overlap", is_flag=True, help="Also enrol contacts active in another cadence."
)
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
@now_option
def launch_command(
    cadence_path: str,
    contacts_path: str,
    contacts_format: str | None,
    start: str,
    send_at: str | None,
    skip_invalid: bool,
    allow_overlap: bool,
    output_format: str,
    db: str,
    now_text: str | None,
) -> int:
    """Validate, plan and enrol a contact list (all or nothing), pinned to this version."""
    import json
    from pathlib import Path

    from .engine.launch import launch
    from .engine.store import open_store

    shown: list[int] = []
    counter = _progress("enrolling")

    def progress(n: int) -> None:
        shown.append(n)
        counter(n)

    try:
        with open_store(db) as store:
            report = launch(
                store,
                Path(cadence_path),
                Path(contacts_path),
                now=_now(now_text),
                start=start,
                send_at=send_at,
                skip_invalid=skip_invalid,
                allow_overlap=allow_overlap,
                contacts_format=contacts_format,
                progress=progress if counter is not None else None,
            )
    finally:
        if shown:
            click.echo(err=True)  # end the counter's line
    if output_format == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return 0
    click.echo(f"{report.cadence} (version {report.cadence_hash}): enrolled {report.enrolled}")
    for email in report.already_enrolled:
        click.echo(f"  skipped {email}: already enrolled")
    for email in report.suppressed:
        click.echo(f"  skipped {email}: unsubscribed or bounced")
    for email, other in report.overlapping:
        click.echo(f"  skipped {email}: active in {other} (--allow-overlap enrols it anyway)")
    for row in report.skipped_rows:
        click.echo(f"  skipped {row}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    return 0


@cadence.command("run")
@click.option("--once", is_flag=True, help="Execute every due step, then exit (system cron, CI).")
@click.option("--every", "every", default=None, metavar="CRON", help="Keep running on a schedule.")
@click.option(
    "--batch",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Emails claimed per transaction; a crash leaves at most one batch unknown.",
)
@click.option(
    "--lease",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a claimed batch may stay in flight before it counts as crashed.",
)
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
@transport_option
@now_option
def run_command(
    once: bool,
    every: str | None,
    batch: int,
    lease: float,
    output_format: str,
    db: str,
    transport: str,
    now_text: str | None,
) -> int:
    """Send due emails and open due tasks. Exit 1 when an email failed or unknown sends
    await `resolve`; exit 2 when the transport refuses the settings (login, folder)."""
    import json
    from datetime import UTC, datetime

    from .engine.cron import parse_cron
    from .engine.errors import UsageError
    from .engine.run.clock import Clock
    from .engine.run.loop import Runner, RunOptions, RunReport
    from .engine.runner import run_every, stopping_on_signals
    from .engine.store import open_store
    from .engine.transports import parse_transport
    from .engine.unsubscribe import check_environment as check_unsubscribe_environment

    if once == (every is not None):
        raise UsageError("give exactly one of --once and --every CRON")
    schedule = parse_cron(every) if every is not None else None
    check_unsubscribe_environment()
    clock = Clock(_now(now_text) if now_text else None)

    def show(at: datetime, report: RunReport) -> None:
        if progress is not None:
            progress.close()
        if output_format == "json":
            click.echo(
                json.dumps({"at": at.replace(microsecond=0).isoformat(), **report.as_dict()})
            )
        else:
            parts = ", ".join(
                f"{k.replace('_', ' ')} {v}" for k, v in report.as_dict().items() if v
            )
            click.echo(f"{at:%Y-%m-%d %H:%M:%S}Z {parts or 'nothing due'}")

    def error(exc: Exception) -> None:
        if progress is not None:
            progress.close()
        click.echo(f"error: {exc}", err=True)

    sender = parse_transport(transport)
    with open_store(db) as store:
        if now_text is None:  # now is the store's clock (PostgreSQL's), not this machine's
            clock = Clock(datetime.fromtimestamp(store.clock(), UTC))
        progress = _RunProgress(store, clock) if _stderr_is_tty() else None
        runner = Runner(
            store,
            sender,
            clock=clock,
            options=RunOptions(batch=batch, lease=lease),
            progress=progress,
        )
        if schedule is not None:

            def show_and_next(at: datetime, report: RunReport) -> None:
                show(at, report)
                if runner.stop_requested:  # no next pass: the loop ends now
                    return
                upcoming = schedule.next_after(clock.now())
                if output_format == "json":
                    click.echo(json.dumps({"next_pass": upcoming.isoformat()}))
                else:
                    click.echo(f"next pass at {upcoming:%Y-%m-%d %H:%M:%S}Z ({every})")

            run_every(
                runner,
                schedule,
                show_and_next,
                error,
                before_pass=_inbox_before_pass(store, clock, output_format),
            )
            if runner.stop_requested:
                click.echo(STOPPED_BY_SIGNAL, err=True)
            return 0
        started = clock.now()
        try:
            with stopping_on_signals(runner):
                report = runner.run_once()
        finally:
            if progress is not None:
                progress.close()
        unknown = len(store.unknown_sends())
    show(started, report)
    if runner.stop_requested:
        click.echo(STOPPED_BY_SIGNAL, err=True)
    if unknown:
        click.echo(f"{unknown} unknown send(s): see `cadence status`", err=True)
    failed = report.failed + report.bounced
    if failed:
        click.echo(f"{failed} email(s) failed: see `cadence status`", err=True)
    return 1 if unknown or failed else 0


def _inbox_before_pass(store: Any, clock: Any, output_format: str) -> Any:
    """`run --every` polls CADENCE_IMAP_URL before each pass, when it is set (SPEC §8)."""
    from .engine.inbound.imap import URL_ENV

    if not os.environ.get(URL_ENV, "").strip():
        return None
    from .engine.inbound.poll import mailbox_from_env, poll

    mailbox = mailbox_from_env(None)  # a bad URL is a usage error now, not at the first pass

    def before_pass() -> None:
        _show_poll_news(poll(store, mailbox, now=clock.now()), output_format, clock.now())

    return before_pass


def _show_poll_news(report: Any, output_format: str, at: Any) -> None:
    """A poll that runs alongside sends is shown when it found something to act on."""
    from .engine.inbound.poll import QUIET_KINDS

    if any(n for k, n in report.counts().items() if k not in QUIET_KINDS):
        _show_poll(report, output_format, at)


def _show_poll(report: Any, output_format: str, at: Any) -> None:
    import json

    from .engine.inbound.poll import QUIET_KINDS

    if output_format == "json":
        click.echo(
            json.dumps(
                {"at": at.replace(microsecond=0).isoformat(), **report.as_dict()},
                ensure_ascii=False,
            )
        )
        return
    counts = ", ".join(f"{k} {n}" for k, n in report.counts().items() if n)
    rescan = " (UIDVALIDITY changed: read again by date)" if report.rescanned else ""
    click.echo(
        f"{at:%Y-%m-%d %H:%M:%S}Z {report.mailbox}: read {report.read}, "
        f"already handled {report.already}{rescan}: {counts or 'nothing new'}"
    )
    for f in report.found:
        if f.kind not in QUIET_KINDS:
            click.echo(f"  {f.kind:<11} {f.email:<32} {f.cadence or '(every cadence)'}: {f.detail}")


@cadence.group("inbox")
def inbox_group() -> None:
    """Hear back from a mailbox: replies, bounces, auto-replies, unsubscribes (SPEC §8)."""


@inbox_group.command("poll")
@click.option(
    "--mailbox",
    "mailbox_url",
    default=None,
    metavar="URL",
    help="imaps://user@host:993/INBOX or imap://user@host:143/INBOX (STARTTLS); "
    "env CADENCE_IMAP_URL. Password: CADENCE_IMAP_PASSWORD.",
)
@click.option("--every", "every", default=None, metavar="CRON", help="Keep polling on a schedule.")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
@now_option
def inbox_poll(
    mailbox_url: str | None, every: str | None, output_format: str, db: str, now_text: str | None
) -> int:
    """Read new mail read-only and act on replies, bounces, auto-replies, unsubscribes."""
    from .engine.cron import parse_cron
    from .engine.inbound.poll import mailbox_from_env, poll, poll_every
    from .engine.run.clock import Clock
    from .engine.store import open_store

    mailbox = mailbox_from_env(mailbox_url)
    schedule = parse_cron(every) if every is not None else None
    clock = Clock(_now(now_text) if now_text else None)
    with open_store(db) as store:
        if schedule is None:
            at = clock.now()
            _show_poll(poll(store, mailbox, now=at), output_format, at)
            return 0

        def once(at: Any) -> None:
            _show_poll(poll(store, mailbox, now=at), output_format, at)

        def error(exc: Exception) -> None:
            click.echo(f"error: {exc}", err=True)

        poll_every(schedule, clock.now, once, error)
    return 0


@cadence.group("tasks")
def tasks_group() -> None:
    """The task queue: calls, InMails, custom tasks and email tasks."""


TASK_TYPES = {
    "email": "email task",
    "call": "call task",
    "inmail": "inmail task",
    "custom": "custom task",
}


@tasks_group.command("list")
@click.option("--cadence", "cadence_name", default=None, help="Only this cadence (its name).")
@click.option("--type", "task_type", type=click.Choice(sorted(TASK_TYPES)), default=None)
@click.option("--due", "due", default=None, metavar="WHEN", help="Only tasks due by WHEN.")
@click.option("--assignee", "--sender", "sender", default=None, help="Only this sender's tasks.")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["table", "json"]), default="table"
)
@db_option
@now_option
def tasks_list(
    cadence_name: str | None,
    task_type: str | None,
    due: str | None,
    sender: str | None,
    output_format: str,
    db: str,
    now_text: str | None,
) -> int:
    """Open tasks, oldest due first."""
    import json

    from .engine.plan import Action
    from .engine.store import TaskFilter, open_store
    from .engine.tasks import list_tasks
    from .engine.when import parse_when

    due_before = (
        int(parse_when(due, "UTC", now=_now(now_text), option="--due").timestamp()) if due else None
    )
    with open_store(db) as store:
        views = list_tasks(
            store,
            TaskFilter(
                cadence=cadence_name,
                action=Action(TASK_TYPES[task_type]) if task_type else None,
                due_before=due_before,
                sender=sender,
            ),
        )
    if output_format == "json":
        click.echo(json.dumps([v.as_dict() for v in views], indent=2, ensure_ascii=False))
        return 0
    if not views:
        click.echo("no open tasks")
        return 0
    w = _width("CONTACT", (v.contact for v in views))
    click.echo(f"{'ID':>6}  {'DUE (UTC)':<17} {'TYPE':<12} {'CONTACT':<{w}} TITLE")
    for v in views:
        click.echo(f"{v.id:>6}  {v.due:%Y-%m-%d %H:%M}  {v.action:<12} {v.contact:<{w}} {v.title}")
    return 0


@tasks_group.command("show")
@click.argument("task_id", type=ROW_ID, metavar="ID")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
def tasks_show(task_id: int, output_format: str, db: str) -> int:
    """One task; email tasks as a compose view with Gmail, Outlook and mailto: links."""
    import json

    from .engine.store import open_store
    from .engine.tasks import show_task

    with open_store(db) as store:
        v = show_task(store, task_id)
    if output_format == "json":
        click.echo(json.dumps(v.as_dict(), indent=2, ensure_ascii=False))
        return 0
    click.echo(f"Task {v.id} ({v.action}) — {v.cadence}, step {v.step_id}")
    click.echo(f"State:   {v.state}")
    click.echo(f"Due:     {v.due:%Y-%m-%d %H:%M} UTC")
    click.echo(f"Contact: {v.contact}")
    click.echo(f"Title:   {v.title}")
    if v.notes:
        click.echo(f"Notes:   {v.notes}")
    if v.subject is not None and v.links is not None:
        click.echo(f"\nTo:      {v.contact}\nSubject: {v.subject}\n\n{v.body}")
        for name, link in v.links.items():
            click.echo(f"{name}: {link}")
    return 0


def _finish_task(task_id: int, state: str, db: str, now_text: str | None) -> int:
    from .engine.store import open_store
    from .engine.tasks import complete_task

    with open_store(db) as store:
        row = complete_task(store, task_id, state, _now(now_text))
    click.echo(f"task {row.id} {state}")
    return 0


@tasks_group.command("done")
@click.argument("task_id", type=ROW_ID, metavar="ID")
@db_option
@now_option
def tasks_done(task_id: int, db: str, now_text: str | None) -> int:
    """Mark a task done; a late one shifts the contact's later steps (R5)."""
    return _finish_task(task_id, "done", db, now_text)


@tasks_group.command("skip")
@click.argument("task_id", type=ROW_ID, metavar="ID")
@db_option
@now_option
def tasks_skip(task_id: int, db: str, now_text: str | None) -> int:
    """Skip a task; the contact's campaign moves on."""
    return _finish_task(task_id, "skipped", db, now_text)


def _read_body_file(name: str) -> str:
    from pathlib import Path

    from .engine.errors import UsageError

    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"--body-file {name}: cannot read it ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(
            f"--body-file {name}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02X} at "
            f"offset {exc.start})",
            hint="save the email text as UTF-8 plain text",
        ) from None


@tasks_group.command("send")
@click.argument("task_id", type=ROW_ID, metavar="ID")
@click.option(
    "--body-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="The text to send, UTF-8; - reads standard input (else $EDITOR opens the rendered email).",
)
@click.option("--subject", default=None, help="Replace the rendered subject.")
@click.option("--at", "at", default=None, metavar="WHEN", help="Schedule instead of sending now.")
@db_option
@transport_option
@now_option
def tasks_send(
    task_id: int,
    body_file: str | None,
    subject: str | None,
    at: str | None,
    db: str,
    transport: str,
    now_text: str | None,
) -> int:
    """Send an email task with your edits, now or --at WHEN."""
    from .engine.errors import UsageError
    from .engine.store import open_store
    from .engine.tasks import check_send_at, check_sendable, send_task_email, show_task
    from .engine.transports import parse_transport
    from .engine.unsubscribe import check_environment as check_unsubscribe_environment
    from .engine.when import parse_when

    check_unsubscribe_environment()
    now = _now(now_text)
    with open_store(db) as store:
        check_sendable(store, task_id)  # before any editor opens
        v = show_task(store, task_id)
        assert v.body is not None
        # Settings first: a bad --at or transport must not throw away a rep's edits.
        when = parse_when(at, "UTC", now=now, option="--at") if at else None
        check_send_at(when, now)
        sender = parse_transport(transport)
        if body_file is not None:
            body = _read_body_file(body_file)
        else:
            try:
                edited = click.edit(v.body)
            except click.ClickException as exc:
                raise UsageError(
                    f"the editor failed: {exc.format_message()}",
                    hint="set EDITOR (or VISUAL) to an editor that exits 0, e.g. EDITOR=nano, "
                    "or write the text to a file and pass --body-file FILE",
                ) from None
            body = v.body if edited is None else edited
        if not body.strip():
            raise UsageError(
                f"task {task_id}: the email body is empty; nothing was sent",
                hint="write the text of the email, or `cadence tasks skip` the task",
            )
        row = send_task_email(
            store,
            sender,
            task_id,
            subject=subject or v.subject or "",
            body=body,
            now=now,
            at=when,
        )
    if row.state == "sent":
        click.echo(f"task {task_id} sent as {row.message_id}")
    else:
        click.echo(f"task {task_id} scheduled for {when:%Y-%m-%d %H:%M} UTC")
    return 0


@cadence.command("event")
@click.argument("kind", type=click.Choice(["reply", "bounce", "unsubscribe"]))
@click.option("--contact", "email", default=None, metavar="EMAIL")
@click.option(
    "--token",
    default=None,
    metavar="TOKEN",
    help="unsubscribe only: the token of an unsubscribe link instead of --contact.",
)
@click.option(
    "--cadence",
    "cadence_name",
    default=None,
    help="Only this cadence's enrolment (replies; bounce and unsubscribe suppress everywhere).",
)
@db_option
@now_option
def event_command(
    kind: str,
    email: str | None,
    token: str | None,
    cadence_name: str | None,
    db: str,
    now_text: str | None,
) -> int:
    """Record a reply, bounce or unsubscribe (idempotent); stops later steps."""
    from .engine.errors import UsageError
    from .engine.signals import record
    from .engine.store import SignalKind, open_store
    from .engine.unsubscribe import unsubscribe_by_token

    if token is not None and kind != "unsubscribe":
        raise UsageError("--token only goes with `cadence event unsubscribe`")
    if (email is None) == (token is None):
        raise UsageError(
            "give exactly one of --contact EMAIL and --token TOKEN"
            if kind == "unsubscribe"
            else "give --contact EMAIL"
        )
    with open_store(db) as store:
        if token is not None:
            done = unsubscribe_by_token(store, token, source="command", now=_now(now_text))
            email, result = done.email, done.result
        else:
            assert email is not None
            result = record(
                store, SignalKind(kind), email, cadence=cadence_name, now=_now(now_text)
            )
    note = "" if result.new else " (already recorded)"
    scope = "" if kind == "reply" else " (suppressed for every cadence)"
    click.echo(
        f"{kind} for {email}{note}: {len(result.ended)} enrolment(s) ended, "
        f"{result.cancelled_steps} step(s) cancelled{scope}"
    )
    return 0


@cadence.group("enrolments")
def enrolments_group() -> None:
    """Contacts in flight: list, show, pause, resume, remove (SPEC §11)."""


ENROLMENT_STATES = (
    "active", "paused", "completed", "replied", "bounced", "unsubscribed", "removed",
)  # fmt: skip


@enrolments_group.command("list")
@click.option("--cadence", "cadence_name", default=None, help="Only this cadence (its name).")
@click.option("--state", type=click.Choice(ENROLMENT_STATES), default=None)
@click.option("--contact", "contact", default=None, metavar="EMAIL", help="Only this contact.")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["table", "json"]), default="table"
)
@db_option
def enrolments_list(
    cadence_name: str | None, state: str | None, contact: str | None, output_format: str, db: str
) -> int:
    """Enrolments, oldest first."""
    import json

    from .engine.enrolments import enrolment_dict, list_enrolments
    from .engine.store import EnrolmentState, open_store

    with open_store(db) as store:
        found = list_enrolments(
            store,
            cadence=cadence_name,
            state=EnrolmentState(state) if state else None,
            contact=contact,
        )
    if output_format == "json":
        click.echo(json.dumps([enrolment_dict(e) for e in found], indent=2, ensure_ascii=False))
        return 0
    if not found:
        click.echo("no enrolments")
        return 0
    w = _width("CONTACT", (e.email for e in found))
    click.echo(f"{'ID':>6}  {'STATE':<12} {'LAUNCHED (UTC)':<17} {'CONTACT':<{w}} CADENCE")
    for e in found:
        launched = f"{_utc(e.launched_utc):%Y-%m-%d %H:%M}"
        click.echo(f"{e.id:>6}  {e.state:<12} {launched:<17} {e.email:<{w}} {e.cadence_name}")
    return 0


def _width(header: str, values: Iterable[str], least: int = 0) -> int:
    """A table column's width: its longest value or its header, so no row runs into the next
    column."""
    return max(len(header), least, *map(len, values))


def _utc(seconds: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


@enrolments_group.command("show")
@click.argument("email", metavar="EMAIL")
@click.option("--cadence", "cadence_name", default=None, help="Only this cadence (its name).")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
def enrolments_show(email: str, cadence_name: str | None, output_format: str, db: str) -> int:
    """A contact's enrolments: each step's due time (UTC and the contact's zone), state,
    sent time and Message-ID; then the contact's events."""
    import json

    from .engine.calendar import zone
    from .engine.enrolments import show
    from .engine.store import open_store

    with open_store(db) as store:
        view = show(store, email, cadence=cadence_name)
    if output_format == "json":
        click.echo(json.dumps(view.as_dict(), indent=2, ensure_ascii=False))
        return 0
    for d in view.enrolments:
        e = d.enrolment
        click.echo(f"{e.cadence_name} @ {e.cadence_hash} — enrolment {e.id}, {e.state}")
        w = _width("", (r.step_id for r in d.steps), 14)
        for r in d.steps:
            due = _utc(r.due_utc)
            local = due.astimezone(zone(r.zone))
            sent = f"sent {_utc(r.sent_utc):%Y-%m-%d %H:%M}Z" if r.sent_utc else ""
            line = (
                f"  {r.step_id:<{w}} {r.state:<10} due {due:%Y-%m-%d %H:%M}Z "
                f"({local:%Y-%m-%d %H:%M} {r.zone})"
            )
            click.echo(" ".join(part for part in (line, sent, r.message_id or "") if part))
    click.echo("events:")
    for ev in view.events:
        source = f" [{ev.source}]" if ev.source else ""
        click.echo(f"  {_utc(ev.at_utc):%Y-%m-%d %H:%M}Z {ev.kind} {ev.detail}{source}".rstrip())
    return 0


def _operate(
    action: str, email: str, cadence_name: str | None, db: str, now_text: str | None
) -> int:
    from .engine import enrolments
    from .engine.store import open_store

    with open_store(db) as store:
        now = _now(now_text)
        if action == "remove":
            done, cancelled = enrolments.remove(store, email, cadence=cadence_name, now=now)
            for e in done:
                click.echo(
                    f"removed {e.email} from {e.cadence_name} ({cancelled} step(s) cancelled)"
                )
            return 0
        operation = enrolments.pause if action == "pause" else enrolments.resume
        for e in operation(store, email, cadence=cadence_name, now=now):
            click.echo(f"{action}d {e.email} in {e.cadence_name}")
    return 0


@enrolments_group.command("pause")
@click.argument("email", metavar="EMAIL")
@click.option("--cadence", "cadence_name", default=None, help="Only this cadence (its name).")
@db_option
@now_option
def enrolments_pause(email: str, cadence_name: str | None, db: str, now_text: str | None) -> int:
    """Hold every step of the contact's active enrolments until `resume`."""
    return _operate("pause", email, cadence_name, db, now_text)


@enrolments_group.command("resume")
@click.argument("email", metavar="EMAIL")
@click.option("--cadence", "cadence_name", default=None, help="Only this cadence (its name).")
@db_option
@now_option
def enrolments_resume(email: str, cadence_name: str | None, db: str, now_text: str | None) -> int:
    """Resume paused enrolments; the rest of the schedule shifts by the pause (as R5)."""
    return _operate("resume", email, cadence_name, db, now_text)


@enrolments_group.command("remove")
@click.argument("email", metavar="EMAIL")
@click.option("--cadence", "cadence_name", default=None, help="Only this cadence (its name).")
@db_option
@now_option
def enrolments_remove(email: str, cadence_name: str | None, db: str, now_text: str | None) -> int:
    """End the contact's enrolments: nothing more is sent; the history is kept."""
    return _operate("remove", email, cadence_name, db, now_text)


@cadence.command("status")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
@now_option
def status_command(output_format: str, db: str, now_text: str | None) -> int:
    """Per cadence and version: enrolments, sends, tasks. Exit 1 when unknown sends exist."""
    import json

    from .engine.status import status
    from .engine.store import open_store

    with open_store(db) as store:
        report = status(store, _now(now_text))
    if output_format == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        for v in report.versions:
            finished = ", ".join(f"{k} {n}" for k, n in v.finished.items())
            click.echo(f"{v.cadence_name} @ {v.cadence_hash}")
            click.echo(
                f"  enrolled {v.enrolled}, active {v.active}, paused {v.paused}, "
                f"finished: {finished}, successes {v.successes}\n"
                f"  sent {v.sent}, due {v.due}, held {v.held}, open tasks {v.open_tasks}, "
                f"failed {v.failed}, retrying {v.retrying}\n"
                f"  in flight: claimed {v.claimed}, sending {v.sending}; unknown {v.unknown}"
            )
        if not report.versions:
            click.echo("nothing launched yet")
        for p in report.paused:
            why = f" — {p.reason}" if p.reason else ""
            if p.until is not None:
                click.echo(
                    f"paused (auto-reply): {p.email} in {p.cadence_name} until "
                    f"{p.until:%Y-%m-%d %H:%M}Z{why}"
                )
            else:
                click.echo(
                    f"paused: {p.email} in {p.cadence_name} until `cadence enrolments resume`{why}"
                )
        for u in report.unknown:
            click.echo(
                f"UNKNOWN send {u.key}: {u.contact} step {u.step_id} {u.message_id} "
                f"({u.reason}) — settle with `cadence resolve {u.key} --sent|--resend`"
            )
    return 1 if report.unknown else 0


@cadence.group("store")
def store_group() -> None:
    """The state store itself: check it for damage, copy it to another store."""


@store_group.command("check")
@db_option
def store_check(db: str) -> int:
    """Run SQLite's integrity check and compare the schema with this version's.

    Exit 1 and name each damaged table, index or page when something is wrong.
    """
    from .engine.store import check_store

    problems = check_store(db)
    for problem in problems:
        click.echo(f"damaged: {problem}")
    if problems:
        click.echo(
            f"{db}: {len(problems)} problem{'s' * (len(problems) > 1)}; restore it from a "
            f"backup (`sqlite3 {db} .recover` may save its data)"
        )
        return 1
    click.echo(f"{db}: ok (integrity check passed, schema complete)")
    return 0


@cadence.command("resolve")
@click.argument("keys", nargs=-1, metavar="KEY...")
@click.option("--sent", is_flag=True, help="They were delivered: record them sent.")
@click.option("--resend", is_flag=True, help="Send them again (same Message-ID).")
@click.option("--all", "every", is_flag=True, help="Every unknown send (of --cadence).")
@click.option("--cadence", "cadence_name", default=None, help="With --all: only this cadence.")
@db_option
def resolve_command(
    keys: tuple[str, ...],
    sent: bool,
    resend: bool,
    every: bool,
    cadence_name: str | None,
    db: str,
) -> int:
    """Settle unknown sends shown by `cadence status`: KEY... or --all."""
    from .engine.errors import UsageError
    from .engine.signals import check_cadence
    from .engine.status import resolve
    from .engine.store import open_store

    if sent == resend:  # both flags would let click keep whichever came last
        raise UsageError("give exactly one of --sent and --resend")
    if every == bool(keys):
        raise UsageError("give the keys to settle, or --all", hint="see `cadence status`")
    if cadence_name is not None and not every:
        raise UsageError("--cadence goes with --all")
    with open_store(db) as store:
        check_cadence(store, cadence_name)
        done = resolve(store, keys, sent=sent, every=every, cadence=cadence_name)
    for u in done:
        click.echo(f"send {u.key} ({u.message_id}) resolved: {'sent' if sent else 'resend'}")
    if not done:
        click.echo("no unknown sends")
    return 0


# --- the Command Center: serve, users ---
# engine.web (Flask on waitress) and engine.users; see README "The Command Center".


@cadence.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any free."
)
@db_option
@now_option
def serve_command(host: str, port: int, db: str, now_text: str | None) -> int:
    """Serve the Command Center and the one-click unsubscribe endpoint (/u/TOKEN).

    Links use CADENCE_BASE_URL (default http://127.0.0.1:8080); with an https base URL the
    session cookie is Secure. Stop with Ctrl-C or SIGTERM.
    """
    import sys

    from .engine.users import base_url
    from .engine.web.serve import serve

    links = base_url()  # a bad CADENCE_BASE_URL is a usage error before anything listens
    fixed = _now(now_text) if now_text else None

    def ready(address: str, base: str) -> None:
        click.echo(f"Command Center on {address} (links use {base})")
        if not os.environ.get("CADENCE_BASE_URL") and address != base:
            click.echo(
                f"  hint: links point at {base}; set CADENCE_BASE_URL={address} (here and for "
                "`cadence users link`) or the address your proxy serves"
            )
        click.echo("sign-in links: `cadence users link EMAIL`; stop with Ctrl-C")
        sys.stdout.flush()

    serve(
        db, host=host, port=port, base=links, clock=(lambda: fixed) if fixed else None, ready=ready
    )
    return 0


@cadence.group("users")
def users_group() -> None:
    """Who may sign in to the Command Center."""


@users_group.command("add")
@click.argument("email", metavar="EMAIL")
@click.option("--name", default="", help="Shown in the Command Center.")
@click.option("--admin", is_flag=True, help="Sees and works every cadence's tasks.")
@click.option(
    "--timezone", default="UTC", show_default=True, help="IANA zone the pages show times in."
)
@db_option
def users_add(email: str, name: str, admin: bool, timezone: str, db: str) -> int:
    """Add a user: a rep works the tasks of cadences whose sender.email is EMAIL."""
    from datetime import UTC, datetime

    from .engine.users import add_user, open_users

    with closing(open_users(db)) as users:
        user = add_user(
            users, email, name=name, admin=admin, timezone=timezone, now=datetime.now(UTC)
        )
    role = "admin" if user.admin else "rep"
    click.echo(
        f"added {user.email} ({role}, {user.timezone}); sign-in: `cadence users link {user.email}`"
    )
    return 0


@users_group.command("list")
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["table", "json"]), default="table"
)
@db_option
def users_list(output_format: str, db: str) -> int:
    """Every user who may sign in."""
    import json

    from .engine.users import open_users

    with closing(open_users(db)) as users:
        found = users.users()
    if output_format == "json":
        rows = [
            {"email": u.email, "name": u.name, "admin": u.admin, "timezone": u.timezone}
            for u in found
        ]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not found:
        click.echo("no users: add one with `cadence users add EMAIL`")
        return 0
    w = _width("EMAIL", (u.email for u in found))
    z = _width("TIMEZONE", (u.timezone for u in found))
    click.echo(f"{'EMAIL':<{w}} {'ROLE':<6} {'TIMEZONE':<{z}} NAME")
    for u in found:
        click.echo(f"{u.email:<{w}} {'admin' if u.admin else 'rep':<6} {u.timezone:<{z}} {u.name}")
    return 0


@users_group.command("remove")
@click.argument("email", metavar="EMAIL")
@db_option
def users_remove(email: str, db: str) -> int:
    """Remove a user; their sessions and sign-in links stop working at once."""
    from .engine.users import open_users, remove_user

    with closing(open_users(db)) as users:
        user = remove_user(users, email)
    click.echo(f"removed {user.email}")
    return 0


@users_group.command("link")
@click.argument("email", metavar="EMAIL")
@db_option
def users_link(email: str, db: str) -> int:
    """Print a one-time sign-in URL for EMAIL, valid for 15 minutes (CADENCE_BASE_URL)."""
    from datetime import UTC, datetime

    from .engine.users import SIGN_IN_SECONDS, base_url, open_users, sign_in_link

    links = base_url()
    now = datetime.now(UTC)
    with closing(open_users(db)) as users:
        url = sign_in_link(users, email, base=links, now=now)
    click.echo(url)  # alone on stdout, for scripts; what it is on stderr
    until = datetime.fromtimestamp(now.timestamp() + SIGN_IN_SECONDS, UTC)
    click.echo(
        f"one sign-in for {email}, valid for {SIGN_IN_SECONDS // 60} minutes "
        f"(until {until:%Y-%m-%d %H:%M} UTC)",
        err=True,
    )
    return 0


# --- plans: plan, preview, diff ---
# The compiler is engine.compiler; reporters live in engine/formats/plan_*.py. Keep this
# tuple equal to engine.formats.plan_formats.FORMATS (a test checks): importing the
# registry here would load the engine (YAML, Jinja) for `cadence --help`.

PLAN_FORMATS = ("table", "json", "jsonl", "csv", "markdown", "mermaid")


def _with_progress(contacts: Any, total: int | None, label: str) -> Any:
    """A progress bar on stderr for long lists on a terminal; the stream itself otherwise."""
    import sys

    if not sys.stderr.isatty() or (total is not None and total < 2000):
        return contacts
    return _progress_bar(contacts, total, label)


def _progress_bar(contacts: Any, total: int | None, label: str) -> Any:
    import sys

    with click.progressbar(contacts, length=total, label=label, file=sys.stderr) as bar:
        yield from bar


@cadence.command("plan")
@click.argument("cadence_path", metavar="CADENCE", type=click.Path(dir_okay=False))
@contacts_required_option
@contacts_format_option
@click.option(
    "--start",
    default="now",
    show_default=True,
    metavar="now|WHEN",
    help="Launch instant; a date-time without offset is read in default_timezone.",
)
@click.option(
    "--send-at",
    default=None,
    metavar="WHEN|HH:MM",
    help="Send time of the first step (required for choose_at_launch).",
)
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(PLAN_FORMATS),
    default="table",
    show_default=True,
)
@click.option("--render", is_flag=True, help="Add each row's rendered subject and body.")
@click.option("--skip-invalid", is_flag=True, help="Leave bad contact rows out (reported).")
def plan_command(
    cadence_path: str,
    contacts_path: str,
    contacts_format: str | None,
    start: str,
    send_at: str | None,
    output_format: str,
    render: bool,
    skip_invalid: bool,
) -> int:
    """Compile CADENCE for a contact list: one row per (contact, step) with its due time.

    The same inputs (with a fixed --start) give byte-identical output.
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path

    from .engine.compiler import parse_launch, schedule_contacts
    from .engine.contacts import read_contacts
    from .engine.formats.plan_formats import PlanRun, reporter
    from .engine.validate import load_cadence

    cad = load_cadence(Path(cadence_path))
    launch = parse_launch(cad, start, send_at, now=datetime.now(UTC))
    contacts = read_contacts(
        Path(contacts_path),
        skip_invalid=skip_invalid,
        fmt=contacts_format,
        scheduling_only=not render,  # (only rendering reads the other columns)
    )
    total = contacts.prepare()
    stream = _with_progress(contacts, total, "planning")
    # A closed stdout (`cadence plan … | head`) is handled once, by CadenceGroup.
    reporter(output_format)(
        PlanRun(cad, launch, render), schedule_contacts(cad, stream, launch), sys.stdout
    )
    sys.stdout.flush()
    for warning in contacts.warnings:
        click.echo(f"warning: {warning}", err=True)
    for row in contacts.skipped:
        click.echo(f"skipped {row}", err=True)
    if contacts.skipped:
        n = len(contacts.skipped)
        click.echo(
            f"skipped {n} bad row{'s' if n != 1 else ''}; planned {contacts.count} "
            f"contact{'s' if contacts.count != 1 else ''}",
            err=True,
        )
    return 0


@cadence.command("preview")
@click.argument("cadence_path", metavar="CADENCE", type=click.Path(dir_okay=False))
@click.option(
    "--contact",
    "contact_email",
    default=None,
    metavar="EMAIL",
    help="The contact to preview: looked up in --contacts FILE, or known by address alone.",
)
@contacts_optional_option
@contacts_format_option
@click.option("--sample", is_flag=True, help="Use a built-in sample contact.")
@click.option("--start", default="now", show_default=True, metavar="now|WHEN")
@click.option("--send-at", default=None, metavar="WHEN|HH:MM")
def preview_command(
    cadence_path: str,
    contact_email: str | None,
    contacts_path: str | None,
    contacts_format: str | None,
    sample: bool,
    start: str,
    send_at: str | None,
) -> int:
    """Show each step as the contact will see it: emails, follow-up quotes, tasks, links."""
    from datetime import UTC, datetime
    from pathlib import Path

    from .engine.errors import UsageError
    from .engine.formats.plan_preview import (
        address_contact,
        find_contact,
        render_preview,
        sample_contact,
    )
    from .engine.validate import load_cadence

    if sample == (contact_email is not None):
        raise UsageError("give either --contact EMAIL (with --contacts FILE) or --sample")
    cad = load_cadence(Path(cadence_path))
    if contact_email is not None and contacts_path is None:
        # No list: the contact is only its address; other fields render empty/default.
        contact = address_contact(contact_email)
    elif contact_email is not None and contacts_path is not None:
        contact = find_contact(Path(contacts_path), contact_email, fmt=contacts_format)
    else:
        contact = sample_contact(cad)
    click.echo(
        render_preview(cad, contact, start=start, send_at=send_at, now=datetime.now(UTC)), nl=False
    )
    return 0


@cadence.command("diff")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["text", "markdown"]),
    default="text",
    show_default=True,
    help="markdown: for a pull-request comment.",
)
def diff_command(old: str, new: str, output_format: str) -> int:
    """What changes for contacts between two versions of a cadence.

    OLD and NEW are files or REV:PATH (read with `git show`). Exit 0 when the plan is
    unchanged, 1 when it changes.
    """
    from .engine.diff import diff_versions, load_version
    from .engine.formats.plan_diff import render_markdown, render_text

    result = diff_versions(load_version(old), load_version(new))
    render = render_markdown if output_format == "markdown" else render_text
    click.echo(render(result), nl=False)
    return 1 if result.changed else 0


@cadence.command("timeline")
@click.argument("cadence_path", metavar="CADENCE", type=click.Path(dir_okay=False))
def timeline_command(cadence_path: str) -> int:
    """Print the cadence as a Mermaid Gantt chart by campaign day and step type."""
    from pathlib import Path

    from .engine.timeline import campaign_timeline
    from .engine.validate import load_cadence

    click.echo(campaign_timeline(load_cadence(Path(cadence_path))), nl=False)
    return 0


# --- scale-out on PostgreSQL: worker, store migrate (SPEC §10) ---


@cadence.command("worker")
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Jobs this worker runs at once (each its own runner pass and connection).",
)
@click.option(
    "--batch",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Emails claimed per transaction; a crash leaves at most one batch unknown.",
)
@click.option(
    "--lease",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a claimed batch may stay in flight before it counts as crashed.",
)
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit when no job is due instead of waiting for more (cron-style use, benchmarks).",
)
@click.option("--name", default=None, help="This worker's name in procrastinate's tables.")
@click.option(
    "--reconnect-for",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="How long to keep trying to connect again after the connection to PostgreSQL "
    "was lost; then exit 1.",
)
@click.option(
    "-f", "--format", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@db_option
@transport_option
def worker_command(
    concurrency: int,
    batch: int,
    lease: float,
    until_idle: bool,
    name: str | None,
    reconnect_for: float,
    output_format: str,
    db: str,
    transport: str,
) -> int:
    """Run due steps of a PostgreSQL store as procrastinate jobs; any number of workers on
    any number of machines share one database. SIGINT/SIGTERM: running jobs finish first.
    A lost connection is logged in one line and tried again (up to --reconnect-for)."""
    import json
    import logging
    from datetime import UTC, datetime

    from .engine.errors import UsageError
    from .engine.run.loop import RunReport
    from .engine.store.postgres.worker import WorkerOptions, hide_lost_connection, run_worker
    from .engine.transports import parse_transport

    if not db.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            f"cadence worker needs a PostgreSQL store, not {db!r}",
            hint="set CADENCE_DB=postgresql://… (or --db); with SQLite use `cadence run`",
        )
    parse_transport(transport)  # a bad URL is a usage error before any job is taken
    from .engine.inbound.imap import URL_ENV

    mailbox = None
    if os.environ.get(URL_ENV, "").strip():
        from .engine.inbound.poll import mailbox_from_env

        mailbox = mailbox_from_env(None)  # polled once per minute (SPEC §8, §10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not os.environ.get("CADENCE_DEBUG"):
        for handler in logging.getLogger().handlers:
            handler.addFilter(hide_lost_connection)

    def show(report: RunReport) -> None:
        at = datetime.now(UTC).replace(microsecond=0)
        if output_format == "json":
            click.echo(json.dumps({"at": at.isoformat(), **report.as_dict()}))
        else:
            parts = ", ".join(
                f"{k.replace('_', ' ')} {v}" for k, v in report.as_dict().items() if v
            )
            click.echo(f"{at:%Y-%m-%d %H:%M:%S}Z {parts}")

    options = WorkerOptions(
        transport=transport,
        concurrency=concurrency,
        batch=batch,
        lease=lease,
        until_idle=until_idle,
        name=name,
        mailbox=mailbox,
        reconnect_for=reconnect_for,
    )

    def show_poll(report: Any) -> None:
        _show_poll_news(report, output_format, datetime.now(UTC))

    run_worker(db, options, on_report=show, on_poll=show_poll)
    return 0


@store_group.command("migrate")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The new, empty store: postgresql://… or a SQLite file path.",
)
@db_option
def store_migrate_command(target: str, db: str) -> int:
    """Copy the whole state (versions, enrolments, step runs, tasks, events,
    suppressions, cursors) from CADENCE_DB / --db to an empty store, and verify it."""
    from .engine.store.postgres import redact
    from .engine.store.transfer import copy_store

    copied = copy_store(db, target, redact=redact)
    for table, n in copied.counts.items():
        click.echo(f"  {table:<17} {n:>9}")
    click.echo(f"copied {copied.source} to {copied.target}; counts verified")
    return 0


# The cyclic garbage collector's first threshold: Python's default (700 new container
# objects) has it walk the young objects of a big plan or run some 700 times, and promote
# the batches in flight to older generations that it then walks again and again: under a
# daily limit, 0.35-0.45 s of a 100,000-contact plan (measured with gc.callbacks), 0.09 s
# of a 10,000-email run. At 7,000 the same work costs 0.12 s and 0.02 s. Nothing else
# changes: unreachable cycles are still collected, reference counting frees the rest.
GC_THRESHOLD = (7_000, 10, 10)


def quiet_driver_logs() -> None:
    """psycopg logs the connections it finds broken ("discarding closed connection …",
    "error ignored terminating …") as warnings, ahead of the command's own error about
    the same loss: they reach stderr only with CADENCE_DEBUG set."""
    if os.environ.get("CADENCE_DEBUG"):
        return
    import logging

    driver = logging.getLogger("psycopg")
    driver.addHandler(logging.NullHandler())
    driver.propagate = False


def main() -> None:
    import gc

    gc.set_threshold(*GC_THRESHOLD)
    quiet_driver_logs()
    cadence(prog_name="cadence")


if __name__ == "__main__":  # pragma: no cover
    main()
