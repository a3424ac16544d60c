"""The kill matrix: the runner SIGKILLs itself at each fault point, then runs again.

No point may produce a second delivery. A crash before `sending` is committed ends with
exactly one delivery per email after the restart; at or after it, the message in flight
(one session: `sending` is committed for one message at a time) ends `unknown`
(delivered zero or one time) until an operator resolves it.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cadence_engine.engine.store import open_store
from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts
from tests.helpers.smtp_server import SmtpServer, serve

CONTACTS = 5
BATCH = 3  # the first batch (3 emails) is claimed when the process dies
IN_DOUBT = 1  # SmtpTransport.in_doubt: emails `sending` at once
LEASE = "0.5"


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    yield from serve(tmp_path_factory.mktemp("smtp-kill"))


def _run(env: dict[str, str], fault: str | None = None) -> int:
    extra = dict(env)
    if fault is not None:
        extra["CADENCE_FAULT"] = fault
        extra["CADENCE_FAULT_AFTER"] = "1" if fault in ("during-data", "after-250") else "0"
    result = cadence_cmd(
        "run", "--once", "--now", "2026-03-02T10:00Z", "--batch", str(BATCH), "--lease", LEASE,
        env=extra,
    )  # fmt: skip
    return result.returncode


@pytest.mark.parametrize(
    ("fault", "unknown", "reached_server"),
    [
        # Killed before `sending`: the restart sends all, exactly once.
        ("after-claim", 0, 0),
        # Killed with the first email committed `sending` (SMTP hands over one at a time,
        # `in_doubt` = 1): it is unknown, nothing delivered; the rest of the batch, only
        # claimed, goes out after the lease.
        ("after-sending-commit", IN_DOUBT, 0),
        # First email delivered and recorded, second killed half-way through DATA.
        ("during-data", IN_DOUBT, 0),
        # First email delivered and recorded, second accepted with 250, then killed.
        ("after-250", IN_DOUBT, 1),
    ],
    ids=["after-claim", "after-sending-commit", "during-data", "after-250"],
)
def test_crash_and_restart(
    fault: str,
    unknown: int,
    reached_server: int,
    tmp_path: Path,
    smtp: SmtpServer,
    store_url: str,
) -> None:
    smtp.recorder.received.clear()
    env = {
        **smtp.env(),
        # One session: the messages of a batch go one after the other (four sessions:
        # tests/test_smtp_kill_matrix.py).
        "CADENCE_TRANSPORT": f"{smtp.url}?connections=1",
        "CADENCE_DB": store_url,
    }
    launched = cadence_cmd(
        "launch", str(write_cadence(tmp_path)),
        "--contacts", str(write_contacts(tmp_path, CONTACTS)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z", env=env,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr

    assert _run(env, fault) == -signal.SIGKILL
    time.sleep(float(LEASE) + 0.2)  # the dead runner's lease runs out
    restart = _run(env)
    assert restart in (0, 1)

    delivered = Counter(smtp.recorder.message_ids())
    assert all(n == 1 for n in delivered.values()), f"second delivery: {delivered}"
    with open_store(store_url) as store:
        rows = [r for e in range(1, CONTACTS + 1) for r in store.step_runs(e)]
    states = Counter(r.state for r in rows)
    assert states == Counter({"sent": CONTACTS - unknown, "unknown": unknown})
    sent_ids = {r.message_id for r in rows if r.state == "sent"}
    unknown_ids = {r.message_id for r in rows if r.state == "unknown"}
    assert sent_ids <= set(delivered)
    # Unknown sends were delivered zero or one time, never more.
    assert len(set(delivered) & unknown_ids) == reached_server
    assert (restart == 1) == bool(unknown)

    # `status` shows every unknown send and exits 1 until they are resolved.
    status = cadence_cmd("status", env=env)
    assert status.returncode == (1 if unknown else 0)
    if unknown:
        keys = [r.id for r in rows if r.state == "unknown"]
        for key in keys:
            settle = "--sent" if rows[key - 1].message_id in delivered else "--resend"
            assert cadence_cmd("resolve", str(key), settle, env=env).returncode == 0
        assert _run(env) == 0
        delivered = Counter(smtp.recorder.message_ids())
        assert sorted(delivered.values()) == [1] * CONTACTS
        assert cadence_cmd("status", env=env).returncode == 0
