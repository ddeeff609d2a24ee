"""The core layer: data, the law, inference, prediction, diagnostics and fit files.

Pure library code: no argument parsing, no printing, no process-wide setting
made at import (:func:`bayes_sloth.configure` is an explicit call). Nothing
here imports :mod:`bayes_sloth.workflows` or :mod:`bayes_sloth.cli`.
"""
