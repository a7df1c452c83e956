"""Nesting depth of decoded JSON, measured without recursion."""

from __future__ import annotations

from typing import Any

__all__ = ["json_depth_exceeds"]


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
