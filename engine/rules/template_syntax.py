"""Templates compile: a Jinja syntax error is reported at its line in the YAML file.

Subjects, bodies, and the `notes` and `title` of task steps are Jinja templates rendered
per contact in a sandbox. The finding points at the line of the YAML file where the
error is, also inside a `|` block. Check the tag named in the message (`{% if %}` needs
`{% endif %}`, `{{` needs `}}`). A tag that loads another template (`include`, `import`,
`from … import`, `extends`) is refused too: a cadence's templates are self-contained.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule
from . import Issue
from .template_source import analyse, template_texts

RULE = rule("template/syntax", "A template does not compile.", __doc__ or "")


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    for path, source in template_texts(doc):
        error = analyse(source).syntax_error
        if error is not None:
            yield Issue(
                RULE, f"template syntax error: {error.name}", path, text_pos=(error.line, 0)
            )
