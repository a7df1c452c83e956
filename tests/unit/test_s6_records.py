"""Session 6's cheaper message log on the delivery path gives what the general path gives: the response
headers an attempt keeps read back as the bounded headers of the response."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from openconnector.messages.recorder import _bounded_headers, _kept_headers, _read_back

_names = st.sampled_from(["Content-Type", "Set-Cookie", "X-A", "x-a", "WWW-Authenticate", "Server", "Date"])
_header_lists = st.lists(
    st.tuples(st.one_of(_names, st.text("abcdefghij-", min_size=1, max_size=8)), st.text(max_size=600)),
    max_size=70,
)


@settings(max_examples=300, deadline=None)
@given(_header_lists)
def test_kept_response_headers_read_back_as_the_bounded_headers(items: list[tuple[str, str]]) -> None:
    headers = CIMultiDictProxy(CIMultiDict(items))
    kept = _kept_headers(headers)
    assert _read_back(kept) == _bounded_headers(headers)
    assert list(_read_back(kept)) == list(_bounded_headers(headers))  # same order too
    if isinstance(kept, tuple):  # kept raw only while few and short: bounded at once either way
        assert len(kept) <= 50
        assert sum(len(value) for _, value in kept) <= 512
        assert all(type(pair) is tuple and len(pair) == 2 for pair in kept)
