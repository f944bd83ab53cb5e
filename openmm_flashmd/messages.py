"""One-line summaries of exceptions, for errors that must fit on one line."""

from __future__ import annotations


def error_line(err: BaseException, last: bool = False) -> str:
    """The first (or, with ``last``, the last) non-empty line of ``err``'s message, or its type
    name when the message is empty. TorchScript errors end with the line that says what failed."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[-1] if last else lines[0]
