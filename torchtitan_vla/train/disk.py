"""A full disk, recognised whatever layer reports it: ``OSError(ENOSPC)`` (or a disk quota), PyTorch's
zip writer (``[enforce fail at inline_container.cc:...] . unexpected pos ...`` when a write came up short),
or DCP's ``CheckpointException`` holding either for some rank."""

from __future__ import annotations

import errno

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(RuntimeError):
    """A write failed for lack of space; the message names the folder."""


def _causes(exc: BaseException):
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]
        # DCP gathers every rank's failure into CheckpointException.failures (rank -> (exception, trace)).
        for failure in (getattr(e, "failures", None) or {}).values():
            todo.append(failure[0] if isinstance(failure, tuple) else failure)


def is_disk_full(exc: BaseException) -> bool:
    for e in _causes(exc):
        if isinstance(e, DiskFullError):
            return True
        if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
            return True
        text = str(e)
        if "No space left on device" in text or ("inline_container.cc" in text and "unexpected pos" in text):
            return True
    return False
