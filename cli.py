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


def main() -> None:
    cadence(prog_name="cadence")


if __name__ == "__main__":  # pragma: no cover
    main()
