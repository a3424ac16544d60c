"""What happens to enrolments: the rules a store never decides (pure functions).

- `completed`: an enrolment is complete when every step run is settled (R5's `SETTLED`);
- `signal_endings`: how a reply, bounce or unsubscribe ends a contact's enrolments, per
  each pinned version's `on_reply` / `remove_on_bounce`, including a reply that comes
  after the enrolment completed (it still counts: `replied`, and a success);
- `suppresses`: bounces and unsubscribes suppress the address for every cadence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .model import Cadence
from .store.contract import (
    SETTLED,
    Ending,
    EnrolmentRecord,
    EnrolmentState,
    SignalKind,
    StepRow,
    StepState,
)

RUNNING = (EnrolmentState.ACTIVE, EnrolmentState.PAUSED)


def completed(steps: Iterable[StepRow], now: Mapping[int, StepState] | None = None) -> bool:
    """Every step run of the enrolment is settled: nothing more will happen. `now` gives
    the states just recorded for some of them (the rest as read)."""
    if now is None:
        return all(s.state in SETTLED for s in steps)
    return all(now.get(s.id, s.state) in SETTLED for s in steps)


def suppresses(kind: SignalKind) -> bool:
    return kind in (SignalKind.BOUNCE, SignalKind.UNSUBSCRIBE)


def end_state(cadence: Cadence, kind: SignalKind) -> tuple[EnrolmentState | None, bool]:
    """The state a signal ends an enrolment of this version in (None: it goes on), and
    whether it is a success (on_reply.mark_success)."""
    settings = cadence.settings
    if kind is SignalKind.REPLY:
        state = EnrolmentState.REPLIED if settings.on_reply.end else None
        return state, settings.on_reply.mark_success
    if kind is SignalKind.BOUNCE:
        return (EnrolmentState.BOUNCED if settings.remove_on_bounce else None), False
    if kind is SignalKind.UNSUBSCRIBE:
        return EnrolmentState.UNSUBSCRIBED, False
    return None, False


def signal_endings(
    kind: SignalKind,
    enrolments: Sequence[EnrolmentRecord],
    cadence_of: Callable[[str], Cadence],
    cadence_name: str | None,
) -> list[Ending]:
    """The endings a signal for one address causes among its `enrolments` (all of them,
    any state). A reply may be limited to `cadence_name`; bounces and unsubscribes reach
    every cadence."""
    scoped = [
        e
        for e in enrolments
        if kind is not SignalKind.REPLY or cadence_name is None or e.cadence_name == cadence_name
    ]
    out: list[Ending] = []
    for e in scoped:
        if e.state not in RUNNING:
            continue
        state, success = end_state(cadence_of(e.cadence_hash), kind)
        if state is None and not success:
            continue
        out.append(
            Ending(e.id, e.state, state or e.state, success=success, reason=f"stopped: {kind}")
        )
    if kind is SignalKind.REPLY and cadence_name is not None:
        # A reply to the last email of a named cadence (a `--cadence`, or a reply matched
        # by its Message-ID) after the enrolment completed still counts, for the contact's
        # latest enrolment of that cadence, and only one that ran to its end. A reply
        # named to no cadence ends what is running and rewrites no history.
        last = max(scoped, key=lambda e: e.id, default=None)
        if last is not None and last.state is EnrolmentState.COMPLETED:
            state, success = end_state(cadence_of(last.cadence_hash), kind)
            out.append(Ending(last.id, last.state, state or last.state, success=success))
    return out
