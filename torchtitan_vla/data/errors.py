"""``DataError``: the base of every problem the data pipeline names (file, episode, frame, row, shard).

Under ``data.strict`` such a problem stops the run; ``train.py`` then prints it as one ``error:`` line and
exits with its own code, even when it was raised inside a data-loader worker process.
"""

from __future__ import annotations

import re


class DataError(RuntimeError):
    """Bad or unreadable training data, described well enough to find it."""


def one_line(error: BaseException) -> str:
    """The message of a data error as one line. A data-loader worker's error reaches the main process
    wrapped with the worker's traceback ("Caught X in DataLoader worker process 0. Original Traceback
    ..."); its last line holds the original message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) > 1 and "Original Traceback" in str(error):
        # "[package.module.]ClassName: message"
        return re.sub(rf"^([\w.]+\.)?{type(error).__name__}: ", "", lines[-1])
    return " ".join(lines)
