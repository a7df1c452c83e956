"""Nesting depth of decoded JSON, measured without recursion."""

from __future__ import annotations

__all__ = ["json_depth_exceeds"]


def json_depth_exceeds(value: object, limit: int) -> bool:
    """True when ``value`` (decoded JSON) nests more than ``limit`` arrays/objects deep.

    Iterative, so the check itself cannot hit the recursion limit; a scalar has depth 0, ``[]`` depth 1.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: list[object] | None = list(node.values())
        elif isinstance(node, list | tuple):
            children = list(node)
        else:
            children = None
        if children is None:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
