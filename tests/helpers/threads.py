"""Running test code on several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def together(*targets: Callable[[], object]) -> list[BaseException]:
    """Run each target on a thread of its own, all started before any is joined, and
    return what they raised (an exception on a thread is otherwise only printed)."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
