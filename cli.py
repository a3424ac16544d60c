"""The `cadence` command line: parse flags, call `engine`, print, exit. Nothing more."""

from __future__ import annotations

import os
import traceback
from typing import Any

import click

from engine.errors import CadenceError

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

    from engine.formats.findings import ReportOptions, reporter
    from engine.validate import expand_paths, validate_paths

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
    from engine.schema import schema_text

    click.echo(schema_text(), nl=False)


@cadence.command("fmt")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 naming files to reformat.")
def fmt_command(paths: tuple[str, ...], check: bool) -> int:
    """Rewrite cadence files in the canonical layout, keeping comments."""
    from engine.fmt import format_paths
    from engine.validate import expand_paths

    changed, problems = format_paths(expand_paths(paths), write=not check)
    for problem in problems:
        click.echo(problem, err=True)
    for path in changed:
        click.echo(f"would reformat {path}" if check else f"reformatted {path}")
    if problems:
        return 1
    return 1 if check and changed else 0


# --- plans: plan, preview, diff ---
# The compiler is engine.compiler; reporters live in engine/formats/plan_*.py. Keep this
# tuple equal to engine.formats.plan_formats.FORMATS (a test checks): importing the
# registry here would load the engine (YAML, Jinja) for `cadence --help`.

PLAN_FORMATS = ("table", "json", "jsonl", "csv", "markdown", "mermaid")
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


def _with_progress(contacts: Any, total: int | None, label: str) -> Any:
    """A progress bar on stderr for long lists on a terminal; the plain stream otherwise."""
    import sys

    if not sys.stderr.isatty() or (total is not None and total < 2000):
        yield from contacts
        return
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

    from engine.compiler import parse_launch, schedule_contacts
    from engine.contacts import read_contacts
    from engine.formats.plan_formats import PlanRun, reporter
    from engine.validate import load_cadence

    cad = load_cadence(Path(cadence_path))
    launch = parse_launch(cad, start, send_at, now=datetime.now(UTC))
    contacts = read_contacts(Path(contacts_path), skip_invalid=skip_invalid, fmt=contacts_format)
    total = contacts.prepare()
    stream = _with_progress(contacts, total, "planning")
    try:
        reporter(output_format)(
            PlanRun(cad, launch, render), schedule_contacts(cad, stream, launch), sys.stdout
        )
        sys.stdout.flush()
    except BrokenPipeError:
        # `cadence plan … | head` is normal use: stop quietly, like any Unix filter.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    for row in contacts.skipped:
        click.echo(f"skipped {row}", err=True)
    if contacts.skipped:
        click.echo(f"skipped {len(contacts.skipped)} bad rows; planned {contacts.count}", err=True)
    return 0


@cadence.command("preview")
@click.argument("cadence_path", metavar="CADENCE", type=click.Path(dir_okay=False))
@click.option(
    "--contact",
    "contact_email",
    default=None,
    metavar="EMAIL",
    help="The contact to preview (with --contacts).",
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

    from engine.errors import UsageError
    from engine.formats.plan_preview import find_contact, render_preview, sample_contact
    from engine.validate import load_cadence

    if sample == (contact_email is not None):
        raise UsageError("give either --contact EMAIL (with --contacts FILE) or --sample")
    cad = load_cadence(Path(cadence_path))
    if contact_email is not None:
        if contacts_path is None:
            raise UsageError("--contact needs --contacts FILE to find the contact in")
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
    from engine.diff import diff_versions, load_version
    from engine.formats.plan_diff import render_markdown, render_text

    result = diff_versions(load_version(old), load_version(new))
    render = render_markdown if output_format == "markdown" else render_text
    click.echo(render(result), nl=False)
    return 1 if result.changed else 0


@cadence.command("timeline")
@click.argument("cadence_path", metavar="CADENCE", type=click.Path(dir_okay=False))
def timeline_command(cadence_path: str) -> int:
    """Print the cadence as a Mermaid Gantt chart by campaign day and step type."""
    from pathlib import Path

    from engine.timeline import campaign_timeline
    from engine.validate import load_cadence

    click.echo(campaign_timeline(load_cadence(Path(cadence_path))), nl=False)
    return 0


def main() -> None:
    cadence(prog_name="cadence")


if __name__ == "__main__":  # pragma: no cover
    main()
