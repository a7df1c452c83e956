"""Old import path: the HTTP client lives in :mod:`tests.support.http`."""

from tests.support.http import Answer, assert_problem, call, post

__all__ = ["Answer", "assert_problem", "call", "post"]
