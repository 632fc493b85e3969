"""JSON from a sender we do not trust (request bodies, policy documents).

``json.loads`` recurses once per level of nesting: a body of ``[[[[...`` a few thousand deep
raises ``RecursionError`` (not a ``ValueError``), and a document just shallow enough to parse
can still exhaust the stack in whatever walks it next. :func:`loads_bounded` turns both into a
``ValueError`` the caller already answers as "not valid JSON".
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # no AWS request or policy document nests anywhere near this deep


class JsonTooDeep(ValueError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"it nests deeper than {max_depth} levels")


def loads_bounded(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads``, refusing (:class:`JsonTooDeep`, a ``ValueError``) a document whose arrays and
    objects nest deeper than ``max_depth``. Invalid JSON raises ``ValueError`` as ``json.loads`` does."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise JsonTooDeep(max_depth) from None
    if depth_exceeds(document, max_depth):
        raise JsonTooDeep(max_depth)
    return document


def depth_exceeds(document: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` (a scalar is depth 0). Iterative."""
    pending = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth + 1 > max_depth:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
