r"""Covariates of a model: standardized log parameters, log tokens and their interaction, and latent tokens.

::

    x_i = standardize(log S_i, log T_i, (log S_i - m_S) * (log T_i - m_T))

with S in billions of parameters and T in trillions of training tokens, the
statistics stored with the fit (:class:`Standardizer`).

Models without a token count get latent log tokens, with a prior learned
from the models that have them, in the same model (a regression of log
tokens on log parameters, in the standardized units of x)::

    x_i,T = a + b x_i,S + s e_i,    e_i ~ Normal(0, 1)     (observed with tokens, latent without)
    a, b ~ Normal(0, TOKEN_COEF_SD),    s ~ HalfNormal(TOKEN_SD_SCALE)

and the interaction column is recomputed from the latent x_i,T, so the
uncertainty of an unknown token count goes into the skills and the forecast.
Sites: ``token_coef`` = (a, b), ``token_sd`` = s, ``token_z`` = u (the latent
rows' e), ``imputed_tokens`` (trillions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

#: Names of the covariate columns of x.
COVARIATES = ("log_params", "log_tokens", "log_params_x_log_tokens")


@dataclass
class Standardizer:
    """Covariates (log S, log T, interaction) standardized with stored statistics.

    The interaction is the product of the centered logs,
    ``(log S - m_S) (log T - m_T)``: the same model class as the raw product
    (the difference is linear in log S, log T and a constant, which the slopes
    and intercepts absorb) but far less collinear with the main effects, so
    the posterior of the slopes is close to uncorrelated.
    """

    center: np.ndarray = field(default_factory=lambda: np.zeros(2))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sd: np.ndarray = field(default_factory=lambda: np.ones(3))

    @staticmethod
    def raw(params, tokens, center) -> np.ndarray:
        ls = np.log(np.asarray(params, dtype=float))
        lt = np.log(np.asarray(tokens, dtype=float))
        return np.stack([ls, lt, (ls - center[0]) * (lt - center[1])], axis=-1)

    @classmethod
    def fit(cls, params, tokens) -> "Standardizer":
        center = np.array([np.log(np.asarray(params, float)).mean(), np.log(np.asarray(tokens, float)).mean()])
        r = cls.raw(params, tokens, center)
        sd = r.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        return cls(center, r.mean(axis=0), sd)

    def transform(self, params, tokens) -> np.ndarray:
        return (self.raw(params, tokens, self.center) - self.mean) / self.sd

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "mean": self.mean.tolist(), "sd": self.sd.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        return cls(*(np.asarray(d[k], dtype=float) for k in ("center", "mean", "sd")))


#: Prior of the token regression x_T = a + b x_S + s e (standardized units): a, b ~ Normal(0, TOKEN_COEF_SD),
#: s ~ HalfNormal(TOKEN_SD_SCALE). x_T has mean 0 and sd 1 over the models with tokens, so both are wide.
TOKEN_COEF_SD = 1.0
TOKEN_SD_SCALE = 1.0


def standardization_array(std: "Standardizer") -> np.ndarray:
    """The standardizer's statistics as one vector (center (2), mean (3), sd (3)): what the model reads."""
    return np.concatenate([std.center, std.mean, std.sd]).astype(float)


def token_covariates(x, latent, standardization, log_tokens_std):
    """x (N, 3) with the rows ``latent`` (n,) given standardized log tokens ``log_tokens_std`` (..., n).

    Column 0 (standardized log S) is kept; column 1 becomes ``log_tokens_std``
    and column 2 the standardized interaction recomputed from both logs::

        log S = x_S sd_S + mean_S,   log T = x_T sd_T + mean_T,
        x_ST = ((log S - m_S)(log T - m_T) - mean_ST) / sd_ST

    with the statistics of ``standardization`` (:func:`standardization_array`).
    Leading batch dimensions of ``log_tokens_std`` give x a batch too: (..., N, 3).
    """
    center, mean, sd = standardization[0:2], standardization[2:5], standardization[5:8]
    xs = jnp.take(x[:, 0], latent)
    log_s = xs * sd[0] + mean[0]
    log_t = log_tokens_std * sd[1] + mean[1]
    inter = ((log_s - center[0]) * (log_t - center[1]) - mean[2]) / sd[2]
    rows = jnp.stack([jnp.broadcast_to(xs, log_tokens_std.shape), log_tokens_std, inter], axis=-1)
    xb = jnp.broadcast_to(x, rows.shape[:-2] + x.shape)
    return xb.at[..., latent, :].set(rows)


def latent_log_tokens(params: dict, x, latent):
    """Standardized latent log tokens a + b x_S + s u of the rows ``latent`` (..., n), from the sampled sites."""
    coef = params["token_coef"]
    return (coef[..., 0:1] + coef[..., 1:2] * jnp.take(x[:, 0], latent)
            + params["token_sd"][..., None] * params["token_z"])


def fitted_covariates(spec, params: dict, x, latent=None, standardization=None):
    """The covariates of the fitted models under ``params`` (any leading batch dims): ``x`` itself, or,
    with latent tokens, ``x`` with those rows' token columns from the draws (:func:`token_covariates`)."""
    if not spec.n_latent_tokens:
        return x
    return token_covariates(x, latent, standardization, latent_log_tokens(params, x, latent))


def token_regression(spec, x, latent, standardization):
    """Sample sites of the token regression (module docstring); returns x with the latent rows filled in."""
    N = x.shape[0]
    with numpyro.plate("token_term", 2):
        coef = numpyro.sample("token_coef", dist.Normal(0.0, TOKEN_COEF_SD))
    s = numpyro.sample("token_sd", dist.HalfNormal(TOKEN_SD_SCALE))
    with numpyro.plate("latent_model", spec.n_latent_tokens):
        u = numpyro.sample("token_z", dist.Normal(0.0, 1.0), infer={"coordinate_of": "imputed_tokens"})
    known = jnp.ones(N, dtype=bool).at[latent].set(False)
    resid = jnp.where(known, x[:, 1] - coef[0] - coef[1] * x[:, 0], 0.0)  # a latent row's placeholder never enters
    numpyro.factor("token_regression", jnp.sum(jnp.where(known, dist.Normal(0.0, s).log_prob(resid), 0.0)))
    log_t = latent_log_tokens({"token_coef": coef, "token_sd": s, "token_z": u}, x, latent)
    with numpyro.plate("latent_model", spec.n_latent_tokens):
        numpyro.deterministic("imputed_tokens", jnp.exp(log_t * standardization[6] + standardization[3]))
    return token_covariates(x, latent, standardization, log_t)
