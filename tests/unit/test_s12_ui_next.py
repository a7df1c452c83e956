"""After sign-in the browser goes only to a page of the UI, judged as the browser resolves the path."""

from __future__ import annotations

import pytest

from openconnector.ui import forms


@pytest.mark.parametrize(
    "asked",
    [
        "/ui/../api/v1alpha1/openapi.json",
        "/ui/%2e%2e/healthz",
        "/ui/%2E%2E/healthz",
        "/ui/.%2e/healthz",
        "/ui/%2e./healthz",
        "/ui/subscriptions/../../api/v1alpha1/subscriptions",
        "/ui/a%2fb/../../healthz",  # %2f does not split a segment for a browser: two climbs leave /ui
        "/ui/..",
        "/ui/%2e%2e",
        "/ui/..//example.org/",
        "/ui/../ui/login?next=/api/",
        "/ui/./login",
        "/ui/%6cogin",
        "/ui/%5c..%5c..%5capi",
        "/\t/example.org/ui/",
        "/ui/\n",
        " //example.org/ui/",
        "/ui/ä",
    ],
)
def test_a_path_that_resolves_outside_the_ui_goes_to_the_ui(asked: str) -> None:
    assert forms.safe_next(asked) == "/ui/"


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        ("/ui", "/ui"),
        ("/ui/.", "/ui/"),
        ("/ui/./subscriptions/a/b", "/ui/subscriptions/a/b"),
        ("/ui/subscriptions/a/../a/b?status=failed", "/ui/subscriptions/a/b?status=failed"),
        ("/ui/subscriptions/a/b/%2e%2e/c", "/ui/subscriptions/a/c"),
        ("/ui/subscriptions/a/b/messages/x%2Fy", "/ui/subscriptions/a/b/messages/x%2Fy"),
        (
            "/ui/subscriptions/a/b?cursor=abc&status=dropped",
            "/ui/subscriptions/a/b?cursor=abc&status=dropped",
        ),
    ],
)
def test_a_path_that_stays_in_the_ui_is_kept_without_its_dot_segments(asked: str, goes_to: str) -> None:
    assert forms.safe_next(asked) == goes_to
