"""Rules about reading the file itself, before any schema rule can run."""

from __future__ import annotations

from ..findings import rule

ENCODING = rule(
    "yaml/encoding",
    "The file is not UTF-8 text.",
    "Cadence files are UTF-8. Re-save the file as UTF-8 (without changing its content); "
    "the finding points at the first byte that is not valid UTF-8.",
)
SYNTAX = rule(
    "yaml/syntax",
    "The file is not valid YAML.",
    "The YAML parser stopped at the position shown. Common causes: a tab used for "
    "indentation, an unclosed quote or bracket, a `:` inside an unquoted value, or several "
    "documents (`---`) in one file. Quote values that contain `:`, `#`, `{` or `[`.",
)
DUPLICATE_KEY = rule(
    "yaml/duplicate-key",
    "A mapping has the same key twice.",
    "YAML parsers disagree on which of two equal keys wins, so a duplicate is an error. "
    "Remove or rename one of them; the finding points at the second occurrence.",
)
TAG = rule(
    "yaml/tag",
    "The file uses a YAML tag that safe loading does not allow.",
    "Cadence files are loaded safely: tags such as `!!python/object` that would build "
    "arbitrary objects are refused. Write plain values instead.",
)
EMPTY = rule(
    "yaml/empty",
    "The file is empty.",
    "A cadence file needs at least `cadence: 1`, `name`, `sender` and `steps`. Run "
    "`cadence schema` for the full format or copy one of the files in `cadences/`.",
)
ALIASES = rule(
    "yaml/aliases",
    "Aliases expand to too much data, or refer to themselves.",
    "YAML anchors and aliases (`&a`, `*a`) are expanded when the cadence is read. A file "
    "whose aliases expand beyond 100,000 values (a 'billion laughs' file) or that contains "
    "a recursive alias is refused. Write the values out, or use fewer nested aliases.",
)
LIMITS = rule(
    "yaml/too-large",
    "The file breaks a size limit: bytes, nesting, entries or number length.",
    "A cadence file is checked against these limits before it is parsed, so a file from a "
    "pull request cannot make `validate` slow or crash it: at most 1,048,576 bytes, "
    "mappings and lists nested at most 64 deep, at most 10,000 entries in one mapping or "
    'list, numbers of at most 50 characters (README, "Limits"). Real cadences stay far '
    "below them; split a file that does not.",
)
READ = rule(
    "file/unreadable",
    "The file cannot be read.",
    "The operating system refused to read the file (permissions, or it is not a regular "
    "file). Check the path and its permissions.",
)
