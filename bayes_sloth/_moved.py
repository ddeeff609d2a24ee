"""The old flat module paths (``bayes_sloth.model``, ``bayes_sloth.plots``, ...), kept for one release.

Each old path is a small module that warns once when imported and forwards every name to the module's new
place in ``core/`` or ``workflows/`` (``bayes_sloth.model`` -> ``bayes_sloth.core.model``). The short attribute
``bayes_sloth.model`` itself does not warn: it is the package's own name for the new module.
"""

from __future__ import annotations

import importlib
import warnings

#: old flat module -> its new place, relative to the package
MOVED = {
    "conditional": "core.conditioning",
    "config": "core.config",
    "data": "core.data",
    "diagnostics": "core.diagnostics",
    "errors": "core.errors",
    "estimator": "core.estimator",
    "evaluation": "workflows.evaluation",
    "export": "workflows.export",
    "inference": "core.inference",
    "io": "core.io",
    "metadata": "core.metadata",
    "model": "core.model",
    "plots": "workflows.plots",
    "prediction": "core.prediction",
    "programs": "core.programs",
    "progress": "core.progress",
    "questions": "workflows.questions",
    "report": "workflows.report",
    "rotation": "core.rotation",
    "simulation": "workflows.simulation",
    "stacking": "workflows.stacking",
    "sweeps": "workflows.sweeps",
}


def forward(old: str):
    """Warn that ``old`` moved; return the module ``__getattr__`` and ``__dir__`` that forward to its new place."""
    short = old.rsplit(".", 1)[-1]
    new = f"bayes_sloth.{MOVED[short]}"
    warnings.warn(f"{old} moved to {new} (the old path goes in the next release); "
                  f"import it from there, or use bayes_sloth.{short}", DeprecationWarning, stacklevel=3)
    target = importlib.import_module(new)

    def __getattr__(name: str):
        return getattr(target, name)

    def __dir__():
        return dir(target)

    return __getattr__, __dir__
