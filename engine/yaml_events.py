"""The fast path of the loader: plain data straight from the YAML parser's events.

ruamel in pure Python spends a fifth of a load composing a node graph and constructing
from it; a clean cadence needs neither. This builds dicts, lists and scalars directly
from the events, for the plain subset real cadence files use. Anything outside it (tags,
anchors and aliases, duplicate keys, a %YAML directive, unusual numbers, any syntax
error) raises `Unsupported`, and the caller falls back to the full safe loader, which
then gives the exact finding or the same data.

The events come from libyaml (PyYAML's C parser) when it is installed: it tokenises
about 25 times faster than ruamel's pure-Python scanner, which was three quarters of
`validate`'s time. Plain scalars are still typed by ruamel's YAML 1.2 resolver, so the
data is the same; a file libyaml refuses goes to ruamel like any other.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.nodes import ScalarNode

INT = re.compile(r"[-+]?[0-9]+")
FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
TAG = "tag:yaml.org,2002:"


class Unsupported(Exception):
    """Outside the fast subset: let the full loader decide."""


@functools.cache
def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)


DIRECTIVE = re.compile(r"^%", re.MULTILINE)
# A line indented (or made) with a tab: libyaml reads some of these (a tab-only last
# line) where ruamel refuses them, and the loader reports a tab indent as a finding.
TAB_INDENT = re.compile(r"^ *\t", re.M)
# A block scalar whose first line holds only spaces: libyaml reads it by the YAML spec,
# ruamel refuses it when a later line is indented more ("more indented follow up line
# than first"), and the full loader's answer is the one that counts.
SPACES_FIRST = re.compile(r"[|>][-+0-9]*[ \t]*(?:#[^\n]*)?\r?\n +\r?\n")


_SCALAR, _MAPPING, _SEQUENCE, _MAPPING_END, _SEQUENCE_END, _ALIAS, _DOCUMENT = range(7)
_RUAMEL_KINDS = {
    ScalarEvent: _SCALAR,
    MappingStartEvent: _MAPPING,
    SequenceStartEvent: _SEQUENCE,
    MappingEndEvent: _MAPPING_END,
    SequenceEndEvent: _SEQUENCE_END,
    AliasEvent: _ALIAS,
    DocumentStartEvent: _DOCUMENT,
}


@functools.cache
def _libyaml() -> tuple[Callable[[str], Iterable[Any]], dict[type, int], type[Exception]] | None:
    """libyaml's event parser with its event kinds, when PyYAML was built with it."""
    try:
        import yaml as pyyaml
    except ImportError:
        return None
    if not getattr(pyyaml, "__with_libyaml__", False):
        return None
    from yaml import events

    kinds = {
        events.ScalarEvent: _SCALAR,
        events.MappingStartEvent: _MAPPING,
        events.SequenceStartEvent: _SEQUENCE,
        events.MappingEndEvent: _MAPPING_END,
        events.SequenceEndEvent: _SEQUENCE_END,
        events.AliasEvent: _ALIAS,
        events.DocumentStartEvent: _DOCUMENT,
    }
    loader = pyyaml.CSafeLoader

    def parse(text: str) -> Iterable[Any]:
        events: Iterable[Any] = pyyaml.parse(text, Loader=loader)
        return events

    return parse, kinds, pyyaml.YAMLError


def load(text: str, *, use_libyaml: bool = True) -> Any:
    if DIRECTIVE.search(text):
        raise Unsupported  # `%YAML 1.1` would change how the shared parser reads later files
    if "\t" in text and TAB_INDENT.search(text):
        raise Unsupported
    if " \n" in text and SPACES_FIRST.search(text):
        raise Unsupported
    yaml = _yaml()
    resolver = yaml.resolver
    fast = _libyaml() if use_libyaml else None
    # libyaml is given the text as UTF-8: a lone surrogate in it cannot be (ruamel's
    # reader then names the character).
    errors: tuple[type[Exception], ...] = (YAMLError, AssertionError, UnicodeEncodeError)
    if fast is not None:
        events, kinds, errors = fast[0](text), fast[1], (*errors, fast[2])
    else:
        events, kinds = yaml.parse(text), _RUAMEL_KINDS
    stack: list[Any] = []  # open containers; a dict is followed by its pending key
    root: Any = None
    documents = 0
    try:
        for event in events:
            kind = kinds.get(type(event))
            if kind == _SCALAR:
                value = _scalar(event, resolver)
            elif kind in (_MAPPING, _SEQUENCE):
                if event.anchor is not None or event.tag is not None:
                    raise Unsupported
                stack.append({} if kind == _MAPPING else [])
                if kind == _MAPPING:
                    stack.append(_NO_KEY)
                continue
            elif kind == _MAPPING_END:
                stack.pop()  # the pending-key slot
                value = stack.pop()
            elif kind == _SEQUENCE_END:
                value = stack.pop()
            elif kind == _ALIAS:
                raise Unsupported
            elif kind == _DOCUMENT:
                documents += 1
                if documents > 1 or getattr(event, "version", None):
                    raise Unsupported
                continue
            else:
                continue  # stream start/end, document end
            if not stack:
                root = value
            elif stack[-1] is _NO_KEY:
                if type(value) is not str:
                    raise Unsupported  # 1:, true:, complex keys: the full loader decides
                stack[-1] = value
            elif type(stack[-1]) is list:
                stack[-1].append(value)
            else:
                key = stack.pop()
                mapping = stack[-1]
                if key in mapping:
                    raise Unsupported  # duplicate key: the full loader names it
                mapping[key] = value
                stack.append(_NO_KEY)
    except errors as exc:  # ruamel asserts on `%YAML 1.3`
        raise Unsupported from exc
    return root


class _NoKey:
    __slots__ = ()


_NO_KEY = _NoKey()


def _scalar(event: Any, resolver: Any) -> Any:
    if event.anchor is not None or event.tag is not None:
        raise Unsupported  # anchors and explicit tags
    value: str = event.value
    if event.style:
        return value  # quoted or block scalars are text
    kind = _plain_kind(value, resolver)
    if kind == "str":
        return value  # dates stay text, as in the full loader
    if kind == "null":
        return None
    if kind == "bool":
        return value.lower() == "true"
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    raise Unsupported


@functools.lru_cache(maxsize=8192)
def _plain_kind(value: str, resolver: Any) -> str:
    """What the YAML 1.2 resolver makes of a plain scalar (the same few hundred texts
    recur in every cadence file, so each is resolved once per run)."""
    tag = resolver.resolve(ScalarNode, value, (True, False))
    if tag == TAG + "str" or tag == TAG + "timestamp":
        return "str"
    if tag == TAG + "null":
        return "null"
    if tag == TAG + "bool":
        return "bool"
    if tag == TAG + "int" and INT.fullmatch(value):
        return "int"
    if tag == TAG + "float" and FLOAT.fullmatch(value):
        return "float"
    return "unsupported"
