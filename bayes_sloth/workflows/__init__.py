"""The workflow layer: evaluation, sweeps, stacking, questions, simulation, plots, reports and exports.

Built on the core's public functions only; nothing here imports :mod:`bayes_sloth.cli`.
"""
