"""The inbound samples of tests/cases/inbound/: their expectations, filled-in bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

CASES = Path(__file__).resolve().parents[1] / "cases" / "inbound"
SENDER = "dana@acme.example"


@dataclass(frozen=True)
class Sample:
    name: str
    expect: str
    return_date: date | None
    template: str

    def render(
        self, *, contact: str = "someone@example.com", msgid: str = "<a1@acme.example>",
        token: str = "TOKENtoken12345678", sender: str = SENDER,
    ) -> bytes:  # fmt: skip
        local, _, domain = sender.partition("@")
        text = (
            self.template.replace("{{msgid}}", msgid)
            .replace("{{contact}}", contact)
            .replace("{{token}}", token)
            .replace("{{sender_plus}}", f"{local}+unsubscribe-{token}@{domain}")
            .replace("{{sender}}", sender)
        )
        return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def sample(name: str) -> Sample:
    lines = (CASES / f"{name}.eml").read_text(encoding="utf-8").splitlines(keepends=True)
    expect, returns = "", None
    while lines and lines[0].startswith("# "):
        key, _, value = lines.pop(0)[2:].partition(":")
        if key == "expect":
            expect = value.strip()
        elif key == "return" and value.strip() != "none":
            returns = date.fromisoformat(value.strip())
    return Sample(name, expect, returns, "".join(lines))


def all_samples() -> list[Sample]:
    return [sample(p.stem) for p in sorted(CASES.glob("*.eml"))]
