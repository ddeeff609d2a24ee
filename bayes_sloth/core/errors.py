"""Exceptions of bayes_sloth.

Every error a user can cause derives from :class:`BayesSlothError`; its message
is one line that names the column, row or value at fault and what to do. The
command line prints that line and exits non-zero, never a traceback.
"""


class BayesSlothError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(BayesSlothError, ValueError):
    """Bad data or bad arguments: the message names what is wrong."""


class DataUnavailableError(BayesSlothError, OSError):
    """The real leaderboard could not be found, downloaded or verified."""


class FitFileError(BayesSlothError, OSError):
    """A saved fit that cannot be read: corrupted, or from an incompatible version."""


class OutputError(BayesSlothError, OSError):
    """A file that could not be written (a full disk, no permission): the file that was there is unchanged."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the caller's code: the first frame outside this package."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package, every layer
    level, frame = 2, sys._getframe(1)  # stacklevel 1 would be this function itself
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def once_per_call(fn):
    """Decorator: each distinct warning that ``fn``'s call raises (its own or those of the calls it makes:
    a question asks for dozens of forecasts) is given once, when the call ends, with how many times it
    came (``(x 25 in this call)``), attributed to the caller's code. Another call warns again: nothing is
    remembered between calls, whatever Python's warning registry would do. Warnings raised outside this
    package pass through as they came. Nested decorated calls leave the counting to the outermost."""
    import functools
    import os
    import warnings

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if getattr(_ONCE, "depth", 0):
            return fn(*args, **kwargs)
        _ONCE.depth = 1
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn(*args, **kwargs)
        finally:
            _ONCE.depth = 0
        counts: dict = {}
        for w in caught:
            ours = os.path.abspath(w.filename).startswith(here + os.sep) or issubclass(w.category, UserWarning)
            key = (w.category, str(w.message)) if ours else (w.category, str(w.message), w.filename, w.lineno)
            counts.setdefault(key, [w, 0])[1] += 1
        for key, (w, n) in counts.items():
            if len(key) == 2:
                warn(str(w.message) + (f" (x {n} in this call)" if n > 1 else ""), w.category)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return out

    return wrapper


import threading as _threading  # noqa: E402

_ONCE = _threading.local()
