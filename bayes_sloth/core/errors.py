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

    here = os.path.dirname(os.path.abspath(__file__))
    level, frame = 2, sys._getframe(1)  # stacklevel 1 would be this function itself
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
