"""Fast paths of the message builder give exactly what their full versions give.

Each fast path handles the common case (plain ASCII) with less work; these properties
hold it equal to the full version on inputs made to sit on the edges: label and local
part lengths around their limits, dots, hyphens, upper case, non-ASCII, spaces.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.engine.addresses import AddressError, MailAddress, full_check, parse_address

_ATOM_CHARS = "aZ09-_.+!~'"
_LABEL_CHARS = "aZ9-_ü."


def _label(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(_LABEL_CHARS, max_size=max_size),
        st.integers(60, 66).map(lambda n: "a" * n),
    )


addresses = st.one_of(
    st.text("aZ9.-@ ü_", max_size=40),
    st.builds(
        lambda local, labels, dot: local + "@" + ".".join(labels) + dot,
        st.one_of(st.text(_ATOM_CHARS + "@ é", max_size=20), st.integers(62, 66).map("x".__mul__)),
        st.lists(_label(12), min_size=1, max_size=5),
        st.sampled_from(["", "."]),
    ),
    st.integers(230, 260).map(lambda n: "a" * 10 + "@" + ".".join(["b" * 60] * 4)[: n - 11]),
)


def _outcome(check: object, text: str) -> MailAddress | str:
    try:
        return check(text)  # type: ignore[operator, no-any-return]
    except AddressError as exc:
        return f"AddressError: {exc}"


@settings(max_examples=2000)
@given(addresses)
def test_the_address_fast_path_agrees_with_the_full_check(text: str) -> None:
    assert _outcome(parse_address, text) == _outcome(full_check, text)
