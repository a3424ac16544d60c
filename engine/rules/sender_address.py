"""The sender address can be written into a message: the check contact addresses get.

`sender.email` becomes the From header, the envelope sender and the unsubscribe mailto of
every email, so an address the message builder would refuse (a control or invisible
character, a local part over 64 bytes, a domain label over 63) would fail every send at
`run`. `validate` refuses it now, with the same reason as for a contact's address.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..addresses import address_problem
from . import Issue
from .schema_rules import SENDER_EMAIL


def check(value: Any) -> Iterator[Issue]:
    if not isinstance(value, str) or "@" not in value:
        return  # not shaped like an address: the schema's own pattern says so
    problem = address_problem(value)
    if problem is not None:
        yield Issue(SENDER_EMAIL, f"sender.email {value!r} cannot be sent from: {problem}")
