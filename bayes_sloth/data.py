"""Moved to :mod:`bayes_sloth.core.data`; this old path warns and forwards (see :mod:`bayes_sloth._moved`)."""

from ._moved import forward

__getattr__, __dir__ = forward(__name__)
