"""The one exception type for mistakes a user can make (bad paths, corrupt files, wrong device).

The CLI and the stage scripts print its message on one line and exit with code 2, so every
message must say both what is wrong and what to do about it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


def exit_code_of(func: Callable[[], object]) -> int:
    """Run ``func``; a UserError becomes one ``error:`` line on stderr and exit code 2.

    The CLI and every DVC stage script end through here, so a user sees the same one-line
    message whichever way they ran the step.
    """
    try:
        func()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
