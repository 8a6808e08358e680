"""The one exception type for mistakes a user can make (bad paths, corrupt files, wrong device).

The CLI and the stage scripts print its message on one line and exit with code 2, so every
message must say both what is wrong and what to do about it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a command ended by SIGINT


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


def exit_code_of(func: Callable[[], object]) -> int:
    """Run ``func``; a UserError or a Ctrl-C becomes one line on stderr and a non-zero exit code.

    The CLI and every DVC stage script end through here, so a user sees the same one-line
    message whichever way they ran the step. Whatever was being written is left as before: our
    writes are atomic (``core.files``), so an interrupted step needs no cleanup.
    """
    try:
        func()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: nothing was written by the unfinished step; run it again to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
