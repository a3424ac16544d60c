"""The fast path of the loader: plain data straight from the YAML parser's events.

ruamel in pure Python spends a fifth of a load composing a node graph and constructing
from it; a clean cadence needs neither. This builds dicts, lists and scalars directly
from the events, for the plain subset real cadence files use. Anything outside it (tags,
anchors and aliases, duplicate keys, a %YAML directive, unusual numbers, any syntax
error) raises `Unsupported`, and the caller falls back to the full safe loader, which
then gives the exact finding or the same data.
"""

from __future__ import annotations

import functools
import re
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


def load(text: str) -> Any:
    if DIRECTIVE.search(text):
        raise Unsupported  # `%YAML 1.1` would change how the shared parser reads later files
    yaml = _yaml()
    resolver = yaml.resolver
    stack: list[Any] = []  # open containers; a dict is followed by its pending key
    root: Any = None
    documents = 0
    try:
        for event in yaml.parse(text):
            cls = type(event)
            if cls is ScalarEvent:
                value = _scalar(event, resolver)
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    raise Unsupported
                stack.append({} if cls is MappingStartEvent else [])
                if cls is MappingStartEvent:
                    stack.append(_NO_KEY)
                continue
            elif cls is MappingEndEvent:
                stack.pop()  # the pending-key slot
                value = stack.pop()
            elif cls is SequenceEndEvent:
                value = stack.pop()
            elif cls is AliasEvent:
                raise Unsupported
            elif cls is DocumentStartEvent:
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
    except (YAMLError, AssertionError) as exc:  # ruamel asserts on `%YAML 1.3`
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
    tag = resolver.resolve(ScalarNode, value, (True, False))
    if tag == TAG + "str" or tag == TAG + "timestamp":
        return value  # dates stay text, as in the full loader
    if tag == TAG + "null":
        return None
    if tag == TAG + "bool":
        return value.lower() == "true"
    if tag == TAG + "int" and INT.fullmatch(value):
        return int(value)
    if tag == TAG + "float" and FLOAT.fullmatch(value):
        return float(value)
    raise Unsupported
