"""The vectorized R-hat and ESS of ``bayes_sloth.diagnostics`` against ArviZ."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayes_sloth.diagnostics import summary_table


def _ar1(rng, phi, shape, shift=None):
    """AR(1) chains with autocorrelation phi, (chain, draw, *rest)."""
    e = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = e[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x if shift is None else x + shift


@pytest.mark.parametrize("chains,draws", [(4, 1000), (2, 201), (1, 50), (3, 7)])
def test_rhat_and_ess_match_arviz(chains, draws):
    """Same numbers as ``az.summary`` for mixing, sticky, shifted, skewed and
    constant parameters, even and odd draw counts, one chain or several."""
    rng = np.random.default_rng(chains * 1000 + draws)
    shift = np.arange(chains)[:, None, None] * 0.5
    post = xr.Dataset({
        "fast": (("chain", "draw"), rng.normal(size=(chains, draws))),
        "sticky": (("chain", "draw", "i"), _ar1(rng, 0.95, (chains, draws, 3))),
        "stuck": (("chain", "draw", "j"), _ar1(rng, 0.5, (chains, draws, 2), shift)),
        "skewed": (("chain", "draw"), rng.lognormal(size=(chains, draws)) ** 3),
        "antithetic": (("chain", "draw"), _ar1(rng, -0.7, (chains, draws))),
        "const": (("chain", "draw", "j"), np.ones((chains, draws, 2))),
    }, coords={"chain": np.arange(chains), "draw": np.arange(draws), "i": ["a", "b", "c"], "j": [0, 1]})
    names = list(post.data_vars)
    ours = summary_table(post, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.summary(az.convert_to_inference_data(post), var_names=names, kind="diagnostics", round_to="none")
    assert list(ours.index) == list(ref.index)
    for col in ("ess_bulk", "ess_tail", "r_hat"):
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-8, equal_nan=True,
                                   err_msg=col)
