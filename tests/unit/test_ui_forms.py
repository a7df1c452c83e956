"""The web page's pure rules (``openconnector.ui.forms``): form tokens, redirects, negotiation, fields."""

from __future__ import annotations

import datetime

import pytest

from openconnector.refusal import Refusal
from openconnector.ui import forms


def test_a_form_token_is_bound_to_the_session_and_to_the_process_key() -> None:
    tokens = forms.FormTokens(b"k" * 32)
    token = tokens.issue("alice-token")
    assert tokens.check("alice-token", token)
    assert not tokens.check("bob-token", token)
    assert not tokens.check("alice-token", None)
    assert not tokens.check("alice-token", "")
    assert not forms.FormTokens(b"j" * 32).check("alice-token", token)  # a restarted process
    assert forms.FormTokens().issue("x") != forms.FormTokens().issue("x")  # a random key each


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        ("/ui/subscriptions/a/b?status=failed", "/ui/subscriptions/a/b?status=failed"),
        ("/ui/", "/ui/"),
        (None, "/ui/"),
        ("", "/ui/"),
        ("//example.org/ui/", "/ui/"),
        ("https://example.org/ui/", "/ui/"),
        ("/\\example.org/ui", "/ui/"),
        ("/api/v1alpha1/subscriptions", "/ui/"),
        ("/uixyz", "/ui/"),
        ("/ui/login?next=/ui/", "/ui/"),
        ("/ui/" + "x" * 3000, "/ui/"),
    ],
)
def test_after_sign_in_only_pages_of_the_ui(asked: str | None, goes_to: str) -> None:
    assert forms.safe_next(asked) == goes_to


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("application/xhtml+xml", True),
        ("TEXT/HTML; q=0.5", True),
        ("text/html;q=0", False),
        ("text/html;q=nonsense", False),
        ("*/*", False),
        ("application/json", False),
        ("application/problem+json, */*", False),
        (None, False),
        ("", False),
    ],
)
def test_browsers_get_html_and_every_other_client_problem_json(accept: str | None, html: bool) -> None:
    assert forms.wants_html(accept) is html


def test_the_status_filter_takes_failed_or_one_status() -> None:
    assert forms.parse_status_filter(None) is None
    assert forms.parse_status_filter("") is None
    assert forms.parse_status_filter("failed") == "failed"
    assert forms.parse_status_filter("dead-lettered") == "dead-lettered"
    with pytest.raises(Refusal) as refused:
        forms.parse_status_filter("lost")
    assert refused.value.status == 400
    assert "failed, pending" in refused.value.detail


def test_replay_since_is_read_as_utc_and_defaults_to_the_failed_statuses() -> None:
    form = forms.parse_replay_form("2026-12-06T01:30", [])
    assert form.since == datetime.datetime(2026, 12, 6, 1, 30, tzinfo=datetime.UTC)
    assert form.statuses == ("dead-lettered", "dropped")
    with_offset = forms.parse_replay_form("2026-12-06T02:30:00+01:00", ["dropped"])
    assert with_offset.since == form.since
    assert with_offset.statuses == ("dropped",)
    for since, statuses in (("", []), ("yesterday", []), ("2026-12-06T01:30", ["lost"])):
        with pytest.raises(Refusal) as refused:
            forms.parse_replay_form(since, statuses)
        assert refused.value.status == 400


def test_the_sign_in_token_is_one_token() -> None:
    assert forms.sign_in_token({"token": "  abc.def  "}) == "abc.def"
    for bad in ("", "   ", "two tokens", "line\nbreak", "x" * (16 * 1024 + 1)):
        with pytest.raises(Refusal):
            forms.sign_in_token({"token": bad})


def test_a_form_body_is_read_field_by_field_and_bounded_in_fields() -> None:
    assert forms.parse_form(b"a=1&b=two+words&a=3") == {"a": "1", "b": "two words"}
    assert forms.form_values(b"s=x&s=y&t=z", "s") == ["x", "y"]
    with pytest.raises(Refusal):
        forms.parse_form(b"\xff\xfe")
    with pytest.raises(Refusal):
        forms.parse_form("&".join(f"f{i}=1" for i in range(100)).encode())
