"""Inputs of the message-log tests: a Hypothesis strategy of response header lists (repeated and re-cased
names, values up to past the log's bounds of 50 headers and 512 characters) and the delivery targets an
attempt is recorded for (none; plain; binary with headers, auth, signing and dead-letter headers)."""

from __future__ import annotations

from hypothesis import strategies as st

from openconnector.delivery.target import ContentMode, DeliveryTarget
from tests.support.keys import sub_key

_names = st.sampled_from(["Content-Type", "Set-Cookie", "X-A", "x-a", "WWW-Authenticate", "Server", "Date"])
header_lists = st.lists(
    st.tuples(st.one_of(_names, st.text("abcdefghij-", min_size=1, max_size=8)), st.text(max_size=600)),
    max_size=70,
)

TARGET_KEY = sub_key("ns/sub")
attempt_targets: list[DeliveryTarget | None] = [
    None,
    DeliveryTarget(TARGET_KEY, "http://127.0.0.1:9/hook"),
    DeliveryTarget(
        TARGET_KEY, "http://127.0.0.1:9/hook", content_mode=ContentMode.BINARY, headers={"X-Team": "a"},
        auth_headers={"Authorization": "Bearer secret"}, signing_secret="whsec_" + "A" * 32,
        dead_letter_headers={"X-Dlq-Key": "k"},
    ),
]  # fmt: skip
