"""The error type the CLI reports as one line instead of a traceback."""

from __future__ import annotations


class StackError(RuntimeError):
    """A failure whose message is meant for the person running the stack."""

    @property
    def summary(self) -> str:
        # Details (log tails) follow the first line; the CLI shows only the first.
        text = str(self).strip()
        return text.splitlines()[0] if text else type(self).__name__
