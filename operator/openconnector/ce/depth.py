"""Nesting depth of decoded JSON, measured without recursion."""

from __future__ import annotations

from typing import Any

__all__ = ["json_depth_exceeds", "json_text_within_depth"]


def json_depth_exceeds(value: object, limit: int) -> bool:
    """True when ``value`` (decoded JSON) nests more than ``limit`` arrays/objects deep.

    Iterative, so the check itself cannot hit the recursion limit; a scalar has depth 0, ``[]`` depth 1.
    """
    # Only containers go on the stack (scalars are most of a document and need no visit).
    if not isinstance(value, dict | list | tuple):
        return False
    stack: list[tuple[dict[Any, Any] | list[Any] | tuple[Any, ...], int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list | tuple):
                stack.append((child, level + 1))
    return False


def json_text_within_depth(text: bytes, limit: int) -> bool:
    """True when nothing decoded from the JSON ``text`` (or from any part of it) can nest more than
    ``limit`` deep: every array and object opens with a ``[`` or ``{`` byte, so a text with at most
    ``limit`` of them cannot hold deeper nesting. False means "walk the decoded value to know"
    (:func:`json_depth_exceeds`).

    Finds each opening with ``bytes.find`` (memchr, in C) and stops after ``limit + 1``: a small event
    costs a few finds, a bracket-heavy text at most ``2 * (limit + 1)``.
    """
    found = 0
    for opening in b"[{":
        position = text.find(opening)
        while position >= 0:
            found += 1
            if found > limit:
                return False
            position = text.find(opening, position + 1)
    return True
