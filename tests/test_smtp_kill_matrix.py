"""The kill matrix over SMTP with four sessions: SIGKILL at each fault point.

The runner commits `sending` for at most four messages (one per session) before handing
them over, so a crash leaves at most four `unknown`, each delivered zero or one time; all
the rest is sent exactly once after the restart, and nothing is ever delivered twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cadence_engine.engine.store.sqlite import SqliteStore
from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts
from tests.helpers.smtp_server import SmtpServer, serve

CONTACTS = 10
SESSIONS = 4
LEASE = "0.5"


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    yield from serve(tmp_path_factory.mktemp("smtp-kill-4"))


def _run(env: dict[str, str], fault: str | None = None, after: int = 0) -> int:
    extra = dict(env)
    if fault is not None:
        extra["CADENCE_FAULT"] = fault
        extra["CADENCE_FAULT_AFTER"] = str(after)
    result = cadence_cmd(
        "run", "--once", "--now", "2026-03-02T10:00Z", "--lease", LEASE, env=extra,
    )  # fmt: skip
    return result.returncode


@pytest.mark.parametrize(
    ("fault", "after", "unknown", "reached"),
    [
        # Killed before `sending`: the restart sends all, exactly once.
        ("after-claim", 0, 0, (0, 0)),
        # The first four committed `sending`, nothing handed over yet.
        ("after-sending-commit", 0, SESSIONS, (0, 0)),
        # The commit that records the first chunk `sent` and makes the second `sending`:
        # the first four are settled, the next four in doubt and none of them delivered.
        ("after-sending-commit", 1, SESSIONS, (0, 0)),
        # One session passed half its body, the second to get there dies: of the four in
        # hand, the first may have been accepted.
        ("during-data", 1, SESSIONS, (0, 1)),
        # The second 250 kills the run: two to four of the four in hand were accepted.
        ("after-250", 1, SESSIONS, (2, SESSIONS)),
        # The second chunk: the first four are recorded `sent`, the next four in doubt.
        ("after-250", SESSIONS + 1, SESSIONS, (2, SESSIONS)),
    ],
    ids=[
        "after-claim",
        "after-sending-commit",
        "after-sending-commit-chunk-2",
        "during-data",
        "after-250",
        "after-250-chunk-2",
    ],
)
def test_four_sessions_crash_and_restart(
    fault: str,
    after: int,
    unknown: int,
    reached: tuple[int, int],
    tmp_path: Path,
    smtp: SmtpServer,
) -> None:
    smtp.recorder.clear()
    env = {
        **smtp.env(),
        "CADENCE_TRANSPORT": f"{smtp.url}?connections={SESSIONS}",
        "CADENCE_DB": str(tmp_path / "state.db"),
    }
    launched = cadence_cmd(
        "launch", str(write_cadence(tmp_path)),
        "--contacts", str(write_contacts(tmp_path, CONTACTS)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z", env=env,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr

    assert _run(env, fault, after) == -signal.SIGKILL
    time.sleep(float(LEASE) + 0.2)  # the dead runner's lease runs out
    assert _run(env) == (1 if unknown else 0)

    delivered = Counter(smtp.recorder.message_ids())
    assert all(n == 1 for n in delivered.values()), f"second delivery: {delivered}"
    with SqliteStore(tmp_path / "state.db") as store:
        rows = [r for e in range(1, CONTACTS + 1) for r in store.step_runs(e)]
    assert Counter(r.state for r in rows) == Counter(
        {"sent": CONTACTS - unknown, "unknown": unknown}
    )
    unknown_ids = {r.message_id for r in rows if r.state == "unknown"}
    assert {r.message_id for r in rows if r.state == "sent"} <= set(delivered)
    low, high = reached
    assert low <= len(set(delivered) & unknown_ids) <= high

    # Resolved by an operator, each unknown send goes out at most once in all.
    for row in rows:
        if row.state == "unknown":
            settle = "--sent" if row.message_id in delivered else "--resend"
            assert cadence_cmd("resolve", str(row.id), settle, env=env).returncode == 0
    assert _run(env) == 0
    assert sorted(Counter(smtp.recorder.message_ids()).values()) == [1] * CONTACTS


@pytest.mark.parametrize(
    ("fault", "in_hand"),
    [
        # Asked to stop after the `sending` commit, before any byte went out: nothing is
        # in hand, so the chunk is given back (due again at once).
        ("after-sending-commit", 0),
        # Asked to stop while the first chunk is in DATA: the four in hand still go out
        # and are recorded; the rest is given back.
        ("during-data", SESSIONS),
    ],
)
def test_sigterm_finishes_what_is_in_hand_and_gives_back_the_rest(
    tmp_path: Path, smtp: SmtpServer, fault: str, in_hand: int
) -> None:
    smtp.recorder.clear()
    env = {
        **smtp.env(),
        "CADENCE_TRANSPORT": f"{smtp.url}?connections={SESSIONS}",
        "CADENCE_DB": str(tmp_path / "state.db"),
    }
    launched = cadence_cmd(
        "launch", str(write_cadence(tmp_path)),
        "--contacts", str(write_contacts(tmp_path, CONTACTS)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z", env=env,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    assert _run({**env, "CADENCE_FAULT_SIGNAL": "TERM"}, fault) == 0
    with SqliteStore(tmp_path / "state.db") as store:
        rows = [r for e in range(1, CONTACTS + 1) for r in store.step_runs(e)]
    # None left `sending` or `unknown`.
    assert Counter(r.state for r in rows) == Counter(
        {"sent": in_hand, "planned": CONTACTS - in_hand}
    )
    assert len(smtp.recorder.received) == in_hand
    assert _run(env) == 0  # at once: released rows are due again, no lease to wait for
    assert sorted(Counter(smtp.recorder.message_ids()).values()) == [1] * CONTACTS
