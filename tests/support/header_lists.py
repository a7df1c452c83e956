"""Hypothesis strategy of response header lists: repeated and re-cased names, values up to past the
message log's bounds (50 headers, 512 characters)."""

from __future__ import annotations

from hypothesis import strategies as st

_names = st.sampled_from(["Content-Type", "Set-Cookie", "X-A", "x-a", "WWW-Authenticate", "Server", "Date"])
header_lists = st.lists(
    st.tuples(st.one_of(_names, st.text("abcdefghij-", min_size=1, max_size=8)), st.text(max_size=600)),
    max_size=70,
)
