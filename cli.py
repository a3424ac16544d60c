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


def main() -> None:
    cadence(prog_name="cadence")


if __name__ == "__main__":  # pragma: no cover
    main()
