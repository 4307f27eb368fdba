"""The one base class of the errors mattlib raises on purpose (bad input, damaged files, a busy
folder): each names the problem and the fix in one line."""

from __future__ import annotations

__all__ = ["MattError"]


class MattError(Exception):
    """An error mattlib raises on purpose; its message is one line naming the problem and the fix.

    Each concrete error also derives from the builtin it used to be (``ValueError``,
    ``RuntimeError``), so code that catches those still catches it.
    """
