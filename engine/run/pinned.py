"""Pinned cadence versions by content hash, and the contact row as an enrolment keeps it."""

from __future__ import annotations

import json

from ..contacts import Contact
from ..model import Cadence
from ..store import Repository, StepRow


class Versions:
    """Pinned cadence versions by content hash, rebuilt from the store once each."""

    def __init__(self, store: Repository) -> None:
        self.store = store
        self._cache: dict[str, Cadence] = {}

    def get(self, cadence_hash: str) -> Cadence:
        found = self._cache.get(cadence_hash)
        if found is None:
            data, source = self.store.version(cadence_hash)
            found = Cadence.from_data(json.loads(data), source=source)
            self._cache[cadence_hash] = found
        return found


def contact_of(row: StepRow) -> Contact:
    return contact_from_json(row.contact)


def contact_from_json(text: str) -> Contact:
    data = json.loads(text)
    return Contact(data["email"], data["fields"], data.get("timezone"), data["row"])


def contact_json(contact: Contact) -> str:
    return json.dumps(
        {
            "email": contact.email,
            "fields": contact.fields,
            "timezone": contact.timezone,
            "row": contact.row,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
