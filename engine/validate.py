"""Load a cadence file and check it: the one entry point every command uses.

load (engine.loader) → validate (engine.schema: schema + custom keywords) → locate
(positions only for files with findings) → build (Cadence.from_data).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, UsageError
from .findings import Finding, Severity, has_errors
from .model import Cadence

CADENCE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class FileResult:
    """One checked file: its findings (sorted by position) and its text, for snippets."""

    path: str
    findings: tuple[Finding, ...]
    text: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True, slots=True)
class ValidationReport:
    files: tuple[FileResult, ...]

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.files for f in r.findings]

    @property
    def errors(self) -> int:
        return sum(f.severity is Severity.ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity is Severity.WARNING for f in self.findings)

    @property
    def files_with_findings(self) -> int:
        return sum(1 for r in self.files if r.findings)

    def failed(self, *, strict: bool = False) -> bool:
        return self.errors > 0 or (strict and self.warnings > 0)


def validate_text(text: str, source: str) -> tuple[Cadence | None, list[Finding]]:
    """Check cadence text; the Cadence is returned when there is no error finding."""
    from . import loader, schema

    data = loader.parse(text)
    if isinstance(data, loader.LoadProblem):
        return None, [Finding(source, data.line, data.col, data.rule, Severity.ERROR, data.message)]
    raw = schema.check(data)
    findings: list[Finding] = []
    if raw:
        positions = loader.Positions(text)
        for r in raw:
            line, col = positions.locate(r.path, at_key=r.at_key, text_pos=r.text_pos)
            findings.append(Finding(source, line, col, r.rule, r.severity, r.message, r.path))
        findings.sort()
    if has_errors(findings):
        return None, findings
    return Cadence.from_data(data, source=source), findings


def validate_path(path: Path) -> tuple[Cadence | None, list[Finding], str | None]:
    """Check one file: (cadence or None, findings, the text when it could be decoded)."""
    from . import loader
    from .rules import yaml_rules

    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        finding = Finding(
            str(path), 1, 1, yaml_rules.READ.id, Severity.ERROR, f"cannot read: {reason}"
        )
        return None, [finding], None
    text = loader.decode(raw)
    if isinstance(text, loader.LoadProblem):
        finding = Finding(str(path), text.line, text.col, text.rule, Severity.ERROR, text.message)
        return None, [finding], None
    cadence, findings = validate_text(text, str(path))
    return cadence, findings, text


def load_cadence(path: Path) -> Cadence:
    """Load, validate and build a cadence; raises InputError naming file:line:col, or
    UsageError (exit 2, as for every command) when there is no such file."""
    if not Path(path).exists():
        raise UsageError(f"{path}: no such file", hint="give the path of a cadence file")
    cadence, findings, _ = validate_path(Path(path))
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if cadence is None or errors:
        lines = "\n".join(f.render() for f in errors)
        raise InputError(
            f"{path}: {len(errors)} error(s) in the cadence file:\n{lines}",
            hint=f"run `cadence validate {path}` for details",
        )
    return cadence


def check_file(path: Path) -> FileResult:
    _, findings, text = validate_path(path)
    return FileResult(str(path), tuple(findings), text)


# Below this many files a pool costs more than it saves.
PARALLEL_THRESHOLD = 16


def validate_paths(paths: Iterable[Path], *, jobs: int | None = None) -> ValidationReport:
    """Check many files; results keep the order of `paths`.

    YAML parsing in pure Python dominates, so large batches are spread over forked worker
    processes (they inherit the built validator and the imported modules, so a worker
    starts warm). `jobs=1` checks in this process.
    """
    paths = list(paths)
    workers = min(jobs or os.cpu_count() or 1, len(paths) // (PARALLEL_THRESHOLD // 2) or 1)
    if workers <= 1 or len(paths) < PARALLEL_THRESHOLD or not _can_fork():
        return ValidationReport(tuple(check_file(p) for p in paths))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from . import schema

    schema.validator()  # build once before forking; every worker inherits it
    context = multiprocessing.get_context("fork")
    chunk = max(1, len(paths) // (workers * 4))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return ValidationReport(tuple(pool.map(check_file, paths, chunksize=chunk)))


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def expand_paths(arguments: Sequence[str]) -> list[Path]:
    """Files, folders (searched for *.yaml / *.yml) and globs → the cadence files, in order.

    A path that does not exist, a glob that matches nothing or a folder without cadence
    files is a usage error: CI should fail loudly when it checks nothing.
    """
    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in CADENCE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                raise UsageError(
                    f"{argument}: no cadence files (*.yaml, *.yml) in this folder",
                    hint="pass the folder that holds the cadences, or the files themselves",
                )
        elif path.exists():
            files = [path]
        elif glob.has_magic(argument):
            files = sorted(
                Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file()
            )
            if not files:
                raise UsageError(f"{argument}: no files match this pattern")
        else:
            raise UsageError(f"{argument}: no such file or folder")
        found.update(dict.fromkeys(files))
    return list(found)
