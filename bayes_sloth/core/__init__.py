"""The core layer: data, the law, inference, prediction, diagnostics and fit files.

Pure library code: no argument parsing, no printing, no process-wide setting
made at import (:func:`bayes_sloth.configure` is an explicit call). Nothing
here imports :mod:`bayes_sloth.workflows` or :mod:`bayes_sloth.cli`.
"""


def _quiet_tqdm_in_notebooks() -> None:
    """NumPyro imports ``tqdm.auto``, which in a Jupyter kernel without ipywidgets warns (TqdmWarning,
    "IProgress not found") on stderr, in whichever cell first loads NumPyro: import it here first, that
    warning silenced (and only that one, for that import only; no filter is left behind). Outside a kernel
    nothing is imported."""
    import sys

    if "tqdm.auto" in sys.modules or "ipykernel" not in sys.modules:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        try:
            import tqdm.auto  # noqa: F401
        except ImportError:
            pass


_quiet_tqdm_in_notebooks()
