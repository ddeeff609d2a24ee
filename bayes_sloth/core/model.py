r"""The hierarchical skills scaling law: all of the model's math lives here.

Notation: models :math:`i = 1..N` of families :math:`f(i) = 1..F`, benchmarks
:math:`j = 1..J`, skills :math:`k = 1..K`.

Covariates (standardized with the training models' mean and sd, stored with
the fit)::

    x_i = standardize(log S_i, log T_i, (log S_i - m_S) * (log T_i - m_T))

with S in billions of parameters and T in trillions of training tokens.

Models without a token count (``ModelSpec.n_latent_tokens > 0``; a row with
FLOPs but no tokens was given T = C / (6 S) when the table was read, see
:func:`bayes_sloth.core.data.load_leaderboard`) get latent log tokens, with a prior
learned from the models that have them, in the same model (a hierarchical
regression of log tokens on log parameters, in the standardized units of x)::

    x_i,T = a + b x_i,S + s e_i                       every model
    e_i ~ Normal(0, 1)   observed for a model with tokens (x_i,T is data),
                         latent for a model without (non-centred: x_i,T = a + b x_i,S + s u_i)
    a, b ~ Normal(0, 1)      s ~ HalfNormal(1)

and x_i's interaction column is recomputed from the latent x_i,T with the
stored standardization, so the uncertainty of an unknown token count goes
into the skills and the forecast. The posterior site ``imputed_tokens``
(trillions) is exp of the latent log tokens; ``token_coef`` = (a, b),
``token_sd`` = s, ``token_z`` = u. The standardization is that of the models
with tokens, as before.

Skills::

    theta_i = alpha_f(i) + B' x_i (+ delta * instruct_i)          in R^K
    alpha_f = tau * (z_f - mean_g z_g),   z_f ~ Normal(0, I_K)      (non-centered)
    B       ~ Normal(0, 2)          tau ~ HalfNormal(1)
    delta   ~ Normal(0, 1)          (only with ``instruct_shift=True``)

With ``family_slopes=True`` each family also gets its own slope in log S
(partially pooled, non-centered, summing to zero like alpha)::

    theta_i += gamma_f(i) * x_i,logS
    gamma_f = omega * (u_f - mean_g u_g),  u_f ~ Normal(0, I_K),  omega ~ HalfNormal(0.5)

so a family seen through one or two small models forecasts its larger
models with the uncertainty of how families differ in scaling, and a
never-seen family draws gamma_new = omega * u.

With ``instruct_slope=True`` the instruction-tuned models' skills also get a
slope of their own in log S::

    theta_i += delta_S * instruct_i * x_i,logS,    delta_S ~ Normal(0, 1)   in R^K

so what instruction tuning adds may grow (or shrink) with size: IFEval, the
benchmark instruction tuning moves most, stays near its floor for base
models of every size while instruction-tuned ones climb with size.

With ``model_effects=True`` each model also gets its own offset on the link
scale, the same on every benchmark (non-centered)::

    eta_ij += e_i,   e_i = s * u_i,   u_i ~ Normal(0, 1),   s ~ HalfNormal(0.5)

Without it, a family seen through one small model takes that model's
idiosyncrasies as the family's own: a model that is better or worse than its
law on every benchmark at once moves alpha_f, and the independent
per-benchmark noise sigma_j makes the posterior of alpha_f shrink as if those
deviations averaged out over benchmarks, which they do not. The offset is one
number per model, common to all benchmarks, so it cannot take over a single
benchmark's misfit (offsets per skill did: a benchmark that dominates a skill
lost its own noise, a Heywood case; see ``benchmarks/results/NOTES.md``). A
new model draws a fresh e from the population; a fitted model keeps its
posterior e.

On a leaderboard of at most five benchmarks (``OFFSET_FRAME_MAX_BENCHMARKS``),
with data, the sampler does not move u_i itself: it moves v_i in
``u_i = m_i + r_i v_i``, where m_i and r_i^2 are the mean and variance of a
Gaussian approximation of u_i given every other parameter and the data
(Gauss-Newton steps from u = 0, :func:`offset_frame`;
``r_i = (1 + s^2 W_i)^(-1/2)``, ``W_i = sum_j ((1 - c_j) g'(eta_ij) / sigma_j)^2``),
and the model adds the prior of u and the Jacobian r_i: the same posterior
in other coordinates. Where a model's scores say little about its offset,
r_i ~ 1 and this is the non-centred u = v; where they pin it, v_i's width
no longer follows sigma_j and s. On a small leaderboard (few benchmarks)
the offsets are pinned by its least noisy benchmark, their width in u is
about sigma_j / (s g'), and with u sampled directly the tail of sigma_j's
posterior was a funnel neck (``benchmarks/results/NOTES.md``, "Small
leaderboards").

The family efficiencies are centered (they sum to zero over the fitted
families): the location of the skills is absorbed by the benchmark
intercepts b_j. Without the centering, a common shift of every alpha_f
against the b_j is held only by the prior, a long narrow ridge that a
diagonal mass matrix crosses slowly. A never-seen family draws
alpha_new = tau * z, z ~ Normal(0, I_K), around that zero mean.

(Measured on the real table, 4 x 1000 draws: this non-centered form mixes
about twice as well per draw as a centered one around family-mean
covariates, which shortens trajectories but funnels at families of one
model: 56 divergences at K=2.)

Benchmark response::

    m_ij = c_j + (1 - c_j) * g(lambda_j' theta_i + b_j)
    b_j  ~ Normal(0, 3)

with c_j the benchmark's chance floor (fixed, from metadata) and g the
logistic sigmoid (``link="sigmoid"``) or a learned monotone link
(``link="monotone"``), one for all benchmarks::

    g(eta) = sum_m w_m sigmoid(eta - (c_m - sum_l w_l c_l)),   w ~ Dirichlet(1, ..., 1)

a mixture of unit logistic functions at fixed knots c_m (:data:`LINK_KNOTS`),
centred so that the location stays with the intercepts b_j. It is increasing
from 0 to 1 whatever the weights, is the sigmoid when one knot has all the
weight, and can be flatter or asymmetric; its steepness is not separately
identified from the skills' scale, its shape is.

With ``link="monotone-pooled"`` each benchmark j has its own link g_j, of
the same form with its own weights w_j, partially pooled toward the shared
weights w on the log scale (a logistic-normal, non-centred)::

    w_j = softmax(log w + s_g (z_j - mean_l z_l)),   z_j ~ Normal(0, I_M),
    w ~ Dirichlet(1, ..., 1),   s_g ~ HalfNormal(LINK_SD_SCALE)

so every w_j is on the simplex (g_j increasing from 0 to 1 whatever the
parameters), s_g = 0 is the shared link exactly, and how much the links
differ is learned. The z_j sum to zero over benchmarks (as the family
efficiencies do), so w stays the benchmarks' common centre. Each g_j is
centred by its own weights (location with b_j), and its spread, hence its
steepness, trades off with lambda_j (scale with the loadings): a benchmark's
link carries its shape.

Loadings Lambda (J x K), identified by construction (Geweke and Zhou 1996):
skill k has an anchor benchmark a_k with ``Lambda[a_k, k] = 1`` and
``Lambda[a_k, l] = 0`` for l > k (lower-triangular on the anchors). The fixed
unit loading sets the scale and sign of skill k, the zeros remove the
rotation; every other loading is free, positive by default (more skill never
lowers a score; ``loadings="positive"``, HalfNormal(2)) or real
(``loadings="real"``, Normal(0, 2)).

Noise: the spread around the law is misfit, estimated per benchmark::

    y_ij ~ TruncatedNormal(m_ij, sigma_j, low=0, high=1),   sigma_j ~ LogNormal(log 0.04, 0.5)

so predictive draws stay in [0, 1], exact 0 and 1 scores have a finite
density and scores below the chance floor are allowed. The prior on sigma_j
(95 % in 0.015-0.11) keeps away from zero: a benchmark's scores are averages
over finitely many items and no law fits them exactly; with sigma_j ~
HalfNormal(0.1) a small leaderboard's posterior reached down to sigma_j ~
0.001, where the per-model offsets reproduce that one benchmark exactly (a
Heywood case) and NUTS diverged. With
``noise="logistic"`` the Normal is replaced by a logistic of scale sigma_j,
truncated the same way (:class:`TruncatedLogistic01`). (A truncated Student-t was
tried and removed: JAX has neither the gradient of its CDF in the degrees of
freedom nor its inverse CDF, which truncated sampling needs.)
Only observed (model, benchmark) pairs enter the likelihood: missing scores
are neither imputed nor a reason to drop a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from .errors import InputError
from .rotation import varimax

COVARIATES = ("log_params", "log_tokens", "log_params_x_log_tokens")
LINKS = ("sigmoid", "monotone", "monotone-pooled")
LINK_KNOTS = np.linspace(-3.0, 3.0, 7)  # centres of the learned link's logistic components
#: Prior scale of s_g, the spread of the benchmarks' link weights around the shared ones on the log scale
#: (``link="monotone-pooled"``): HalfNormal(1) puts half its mass below 0.67, where a benchmark's weight at a
#: knot is typically (z = +-1) within a factor e^0.67 ~ 2 of the shared one
LINK_SD_SCALE = 1.0
LOADINGS = ("positive", "real")
NOISES = ("normal", "logistic")


@dataclass(frozen=True)
class ModelSpec:
    """Static structure of one skills law: everything that fixes array shapes.

    Two fits with equal specs (and equal data shapes) share compiled code.
    The defaults are :class:`~bayes_sloth.SkillsLaw`'s: the learned monotone
    link, per-model offsets and the instruct shift.
    """

    n_skills: int
    n_benchmarks: int
    n_families: int
    anchors: tuple[int, ...]
    link: str = "monotone"
    loadings: str = "positive"
    noise: str = "normal"
    instruct_shift: bool = True
    family_slopes: bool = False
    model_effects: bool = True
    n_latent_tokens: int = 0
    instruct_slope: bool = False

    def __post_init__(self):
        if self.link not in LINKS:
            raise InputError(f"link must be one of {LINKS}, got {self.link!r}")
        if self.loadings not in LOADINGS:
            raise InputError(f"loadings must be one of {LOADINGS}, got {self.loadings!r}")
        if self.noise not in NOISES:
            raise InputError(f"noise must be one of {NOISES}, got {self.noise!r}")
        if isinstance(self.n_latent_tokens, bool) or not isinstance(self.n_latent_tokens, (int, np.integer)) \
                or self.n_latent_tokens < 0:
            raise InputError(f"n_latent_tokens must be a non-negative integer, got {self.n_latent_tokens!r}")
        if len(self.anchors) != self.n_skills or len(set(self.anchors)) != self.n_skills:
            raise InputError(f"need {self.n_skills} distinct anchor benchmarks, got {self.anchors}")

    @property
    def loading_structure(self) -> np.ndarray:
        """J x K array: 1 = fixed at one, 0 = fixed at zero, -1 = free."""
        s = -np.ones((self.n_benchmarks, self.n_skills), dtype=int)
        for k, a in enumerate(self.anchors):
            s[a, k] = 1
            s[a, k + 1 :] = 0
        return s

    @property
    def free_loading_index(self) -> np.ndarray:
        """Flat (row-major) indices of the free loadings."""
        return np.flatnonzero(self.loading_structure.ravel() == -1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["anchors"] = list(self.anchors)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d["anchors"] = tuple(int(a) for a in d["anchors"])
        return cls(**d)


# --------------------------------------------------------------- covariates
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


# ------------------------------------------------------------------ anchors
def log_compute(covariates: pd.DataFrame) -> np.ndarray:
    """log(params x tokens) per model: the scale :func:`default_anchors` checks benchmarks against."""
    return np.log(covariates["params"].to_numpy(dtype=float) * covariates["tokens"].to_numpy(dtype=float))


def default_anchors(scores: pd.DataFrame, floors: pd.Series, n_skills: int, log_compute=None,
                    min_scaling: float = 0.6) -> tuple[int, ...]:
    """Anchor benchmarks: a general benchmark for the first skill, then the
    clearest marker of each other varimax-rotated factor, among the benchmarks
    that scale.

    Scores are put on the link scale (``logit((y - c) / (1 - c))``, clipped to
    (0.01, 0.99) before the logit), their pairwise correlation matrix is taken
    over the models that have both scores, its K leading eigenvectors scaled by
    the root eigenvalues give principal-factor loadings, and varimax rotates
    them towards simple structure. Factors are ordered by explained variance.

    The first skill's anchor is the benchmark with the largest loading on the
    first principal factor among those scored for at least 90 % as many models
    as the most-scored one: the first anchor carries only the first skill, so
    it sets that skill's scale for every model, and a general, widely scored
    benchmark pins it best. (On the Sloth table at K=3 the purest marker of the
    first varimax factor was HellaSwag, whose link-scale scores are the most
    compressed of the v1 set, sd 1.02 against MMLU's 1.96; with MMLU as first
    anchor the full fit's smallest bulk ESS went from 314 to 817 at seed 0, and
    was 432 at seed 1.) It stands in for the first (largest) factor's marker;
    each other factor, in order, takes the not-yet-chosen benchmark with the
    largest loading on it relative to its largest loading elsewhere (the
    purest strong marker).

    With ``log_compute`` (log(params x tokens) per model, aligned with
    ``scores``' rows) only benchmarks whose link-scale scores correlate with it
    at ``min_scaling`` or more can be anchors (the K best if fewer pass). An
    anchor fixes its skill's scale and the skill is driven by size and
    tokens: a benchmark that barely scales (TruthfulQA and MUSR on the Sloth
    table, correlation 0.44 and 0.43) makes a factor of its own, the purest
    marker, but anchors a skill the covariates hardly move, whose family
    spread and loadings the sampler then explores badly.
    """
    J = scores.shape[1]
    if not 1 <= n_skills < J:
        raise InputError(f"n_skills must be between 1 and {J - 1} (number of benchmarks - 1), got {n_skills}")
    c = floors.reindex(scores.columns).to_numpy()
    p = np.clip((scores.to_numpy() - c) / (1 - c), 0.01, 0.99)
    z = pd.DataFrame(np.log(p / (1 - p)), columns=scores.columns, index=scores.index)
    eligible = np.ones(J, dtype=bool)
    if log_compute is not None:
        r = z.corrwith(pd.Series(np.asarray(log_compute, dtype=float), index=z.index)).to_numpy()
        r = np.where(np.isfinite(r), r, -np.inf)
        eligible = r >= min_scaling
        if eligible.sum() < n_skills:
            eligible = np.zeros(J, dtype=bool)
            eligible[np.argsort(-r)[:n_skills]] = True
    R = z.corr(min_periods=3).to_numpy()
    R = np.where(np.isfinite(R), R, 0.0)
    np.fill_diagonal(R, 1.0)
    w, v = np.linalg.eigh(R)
    order = np.argsort(w)[::-1][:n_skills]
    L = v[:, order] * np.sqrt(np.maximum(w[order], 0.0))
    if n_skills > 1:
        L = varimax(L)[0]  # the package's one varimax (bayes_sloth.core.rotation)
    L = L * np.sign(L.sum(axis=0) + 1e-12)  # factors oriented so most benchmarks load positively
    L = L[:, np.argsort(-(L**2).sum(axis=0))]
    # the first skill: the benchmark that loads most on the general (first principal) factor,
    # among those scored for (nearly) every model
    pc1 = v[:, np.argmax(w)]
    general = pc1 * np.sign(pc1.sum() + 1e-12)
    n_obs = scores.notna().sum().to_numpy()
    wide = eligible & (n_obs >= 0.9 * n_obs[eligible].max())
    first = int(np.argmax(np.where(wide, general, -np.inf)))
    chosen: list[int] = [first]
    for k in range(1, n_skills):
        purity = L[:, k] - np.abs(np.delete(L, k, axis=1)).max(axis=1)
        purity[~eligible] = -np.inf
        purity[chosen] = -np.inf
        chosen.append(int(np.argmax(purity)))
    return tuple(chosen)


# ------------------------------------------------------------------- the law
#: |eta| beyond which the learned link is constant in float32 (knot offsets are at most 6 from 0)
_ETA_CLIP = 40.0


def _logistic_terms(eta, weights):
    """The knots' logistic terms, shape (..., M, n), for eta (..., n) and weights (..., M).

    ``sigmoid(eta - o_m) = 1 / (1 + exp(-eta) exp(o_m))``: one exponential
    per value, not one per knot; eta is clipped where every term is within
    1e-10 of 0 or 1.
    """
    knots = jnp.asarray(LINK_KNOTS, dtype=eta.dtype)
    offsets = knots - jnp.sum(weights * knots, axis=-1, keepdims=True)  # (..., M)
    e = jnp.exp(-jnp.clip(eta, -_ETA_CLIP, _ETA_CLIP))
    return 1.0 / (1.0 + jnp.exp(offsets)[..., :, None] * e[..., None, :])


def _logistic_mixture_fwd(eta, weights):
    terms = _logistic_terms(eta, weights)
    return jnp.einsum("...m,...mn->...n", weights, terms), (terms, weights)


@jax.custom_vjp
def _logistic_mixture(eta, weights):
    return _logistic_mixture_fwd(eta, weights)[0]


def _logistic_mixture_bwd(res, ct):
    # Written out so that every sum over the n values is a matrix-vector product: reverse-mode autodiff of
    # the same formula sums each knot's n terms in a reduction that the CPU runs one add at a time, and the
    # link's gradient cost 5x as much as its value (measured, benchmarks/results/NOTES.md, session 5).
    terms, weights = res
    slope = terms * (1.0 - terms)  # d sigmoid(eta - o_m) / d eta, = -d / d o_m
    d_eta = ct * jnp.einsum("...m,...mn->...n", weights, slope)
    d_direct = jnp.einsum("...mn,...n->...m", terms, ct)
    d_offsets = -weights * jnp.einsum("...mn,...n->...m", slope, ct)
    knots = jnp.asarray(LINK_KNOTS, dtype=weights.dtype)  # o_m = c_m - sum_l w_l c_l
    d_weights = d_direct - knots * jnp.sum(d_offsets, axis=-1, keepdims=True)
    return d_eta, d_weights


_logistic_mixture.defvjp(_logistic_mixture_fwd, _logistic_mixture_bwd)


def pooled_link_weights(shared, link_sd, link_z):
    """Per-benchmark link weights partially pooled toward the shared ones, shape (..., J, M)::

        w_j = softmax(log w + s_g (z_j - mean_l z_l))

    ``shared`` (..., M) on the simplex, ``link_sd`` (...) >= 0, ``link_z``
    (..., J, M). With ``link_sd = 0`` every row is ``shared`` (up to
    rounding). A shared weight that underflowed to 0 stays 0 (its log is
    floored at the dtype's smallest normal number, so gradients stay finite).
    """
    tiny = jnp.finfo(jnp.result_type(shared)).tiny
    log_w = jnp.log(jnp.maximum(shared, tiny))
    dev = link_z - jnp.mean(link_z, axis=-2, keepdims=True)
    return jax.nn.softmax(log_w[..., None, :] + jnp.asarray(link_sd)[..., None, None] * dev, axis=-1)


def _pooled_terms(eta, weights):
    """Logistic terms (..., M, J, N) and weights (..., M, J, 1) of per-benchmark links on a grid.

    ``eta`` (..., N, J) with benchmark j in column j, ``weights`` (..., J, M).
    As in :func:`_logistic_terms`, one exponential per value:
    ``sigmoid(eta - o_jm) = 1 / (1 + exp(-eta) exp(o_jm))``, the J x M
    factors ``exp(o_jm)`` broadcast over the models (no gather). The models
    are the last axis: with the benchmarks there (12 values) the CPU code
    was about 7x slower.
    """
    knots = jnp.asarray(LINK_KNOTS, dtype=eta.dtype)
    offsets = knots - jnp.sum(weights * knots, axis=-1, keepdims=True)  # (..., J, M)
    scale = jnp.swapaxes(jnp.exp(offsets), -1, -2)[..., None]  # (..., M, J, 1)
    e = jnp.exp(-jnp.clip(jnp.swapaxes(eta, -1, -2), -_ETA_CLIP, _ETA_CLIP))  # (..., J, N)
    return 1.0 / (1.0 + scale * e[..., None, :, :]), jnp.swapaxes(weights, -1, -2)[..., None]


def _pooled_mixture_fwd(eta, weights):
    terms, w = _pooled_terms(eta, weights)
    return jnp.swapaxes(jnp.sum(w * terms, axis=-3), -1, -2), (terms, w)


@jax.custom_vjp
def _pooled_mixture(eta, weights):
    return _pooled_mixture_fwd(eta, weights)[0]


def _pooled_mixture_bwd(res, ct):
    # As _logistic_mixture_bwd, per benchmark: the gradients in a link's weights and offsets are sums over
    # the models, matrix-vector products per benchmark (no scatter, no one-add-at-a-time reduction).
    terms, w = res
    ct = jnp.swapaxes(ct, -1, -2)  # (..., J, N)
    slope = terms * (1.0 - terms)  # d sigmoid(eta - o_jm) / d eta, = -d / d o_jm
    d_eta = jnp.swapaxes(ct * jnp.sum(w * slope, axis=-3), -1, -2)
    d_direct = jnp.einsum("...mjn,...jn->...jm", terms, ct)
    d_offsets = -jnp.swapaxes(w[..., 0], -1, -2) * jnp.einsum("...mjn,...jn->...jm", slope, ct)  # (..., J, M)
    knots = jnp.asarray(LINK_KNOTS, dtype=terms.dtype)  # o_jm = c_m - sum_l w_jl c_l
    return d_eta, d_direct - knots * jnp.sum(d_offsets, axis=-1, keepdims=True)


_pooled_mixture.defvjp(_pooled_mixture_fwd, _pooled_mixture_bwd)


def link_fn(eta, link: str = "sigmoid", weights=None):
    """The monotone link g: R -> (0, 1).

    ``"sigmoid"``: the logistic function. ``"monotone"``: a learned link, a
    mixture of unit logistic functions centred at :data:`LINK_KNOTS` with
    weights on the simplex (``weights``, shape (..., M), leading dims
    matching ``eta``'s), shifted so that the weighted centre is 0::

        g(eta) = sum_m w_m sigmoid(eta - (c_m - sum_l w_l c_l))

    It is increasing from 0 to 1 for any weights, equals the sigmoid when all
    weight sits on one knot, and can be flatter or asymmetric (slow to rise
    and quick to saturate, or the reverse). The centring takes the location
    away from it (the benchmark intercepts carry location).

    ``"monotone-pooled"``: one such link per benchmark, ``weights`` of shape
    (..., J, M) (row j on the simplex, e.g. from :func:`pooled_link_weights`)
    and ``eta`` of shape (..., N, J), column j on benchmark j's link::

        g(eta_ij) = sum_m w_jm sigmoid(eta_ij - (c_m - sum_l w_jl c_l))

    (on a grid, so that the link needs no gather and its gradient no
    scatter: :func:`pair_mean` applies it to every (model, benchmark) pair,
    then picks the observed ones).
    """
    if link == "sigmoid":
        return jax.nn.sigmoid(eta)
    if link == "monotone":
        return _logistic_mixture(eta, weights)
    if link == "monotone-pooled":
        if jnp.ndim(weights) < 2 or jnp.shape(eta)[-1:] != jnp.shape(weights)[-2:-1]:
            raise InputError(f"link='monotone-pooled' needs eta (..., N, J) and weights (..., J, M), got shapes "
                             f"{jnp.shape(eta)} and {jnp.shape(weights)}")
        return _pooled_mixture(eta, weights)
    raise InputError(f"unknown link {link!r}")


def assemble_loadings(spec: ModelSpec, free):
    """Full J x K loading matrix from the free loadings (leading batch dims allowed)."""
    fixed = jnp.asarray((spec.loading_structure == 1).astype(np.float32))
    idx = spec.free_loading_index
    batch = free.shape[:-1]
    flat = jnp.zeros(batch + (spec.n_benchmarks * spec.n_skills,), dtype=free.dtype)
    flat = flat.at[..., idx].set(free)
    return flat.reshape(batch + (spec.n_benchmarks, spec.n_skills)) + fixed


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


def fitted_covariates(spec: "ModelSpec", params: dict, x, latent=None, standardization=None):
    """The covariates of the fitted models under ``params`` (any leading batch dims): ``x`` itself, or,
    with latent tokens, ``x`` with those rows' token columns from the draws (:func:`token_covariates`)."""
    if not spec.n_latent_tokens:
        return x
    return token_covariates(x, latent, standardization, latent_log_tokens(params, x, latent))


def _token_regression(spec: "ModelSpec", x, latent, standardization):
    """Sample sites of the token regression (module docstring); returns x with the latent rows filled in."""
    N = x.shape[0]
    coef = numpyro.sample("token_coef", dist.Normal(0.0, TOKEN_COEF_SD).expand([2]).to_event(1))
    s = numpyro.sample("token_sd", dist.HalfNormal(TOKEN_SD_SCALE))
    u = numpyro.sample("token_z", dist.Normal(0.0, 1.0).expand([spec.n_latent_tokens]).to_event(1))
    known = jnp.ones(N, dtype=bool).at[latent].set(False)
    resid = jnp.where(known, x[:, 1] - coef[0] - coef[1] * x[:, 0], 0.0)  # a latent row's placeholder never enters
    numpyro.factor("token_regression", jnp.sum(jnp.where(known, dist.Normal(0.0, s).log_prob(resid), 0.0)))
    log_t = latent_log_tokens({"token_coef": coef, "token_sd": s, "token_z": u}, x, latent)
    numpyro.deterministic("imputed_tokens", jnp.exp(log_t * standardization[6] + standardization[3]))
    return token_covariates(x, latent, standardization, log_t)


def skills_of(alpha, family, x, slopes, instruct=None, instruct_shift=None, family_slope=None,
              instruct_slope=None):
    """theta_i = alpha_f(i) + B' x_i (+ gamma_f(i) x_i,logS) (+ delta * instruct_i)
    (+ delta_S * instruct_i * x_i,logS), shape (..., N, K).

    Parameters may carry leading batch (draw) dimensions.
    """
    theta = jnp.take(alpha, family, axis=-2) + jnp.einsum("...nc,...ck->...nk", x, slopes)
    if family_slope is not None:
        theta = theta + jnp.take(family_slope, family, axis=-2) * x[..., 0:1]
    if instruct_shift is not None:
        theta = theta + instruct[:, None] * instruct_shift[..., None, :]
    if instruct_slope is not None:
        theta = theta + (instruct[:, None] * x[..., 0:1]) * instruct_slope[..., None, :]
    return theta


def link_weights_of(spec: ModelSpec, params: dict):
    """The weights the link of ``spec`` reads from ``params``: None for the sigmoid, the shared
    ``link_weights`` (..., M) for ``"monotone"``, the per-benchmark ``benchmark_link_weights`` (..., J, M)
    for ``"monotone-pooled"``."""
    if spec.link == "monotone":
        return params["link_weights"]
    if spec.link == "monotone-pooled":
        return params["benchmark_link_weights"]
    return None


def pair_mean(spec: ModelSpec, theta, loadings, intercept, floor, obs_model, obs_bench, model_effect=None,
              link_weights=None):
    """m = c_j + (1 - c_j) g(lambda_j' theta_i + b_j (+ e_i)) for the listed (i, j) pairs.

    ``link_weights``: the link's weights, :func:`link_weights_of` (per benchmark with ``"monotone-pooled"``).
    """
    # every (model, benchmark) pair in one small matrix product, then the listed pairs picked from it:
    # cheaper than gathering a skill row and a loading row per pair, whose gradients are two scatter-adds
    full = jnp.einsum("...nk,...jk->...nj", theta, loadings) + intercept[..., None, :]
    if model_effect is not None:  # added to the (N, J) matrix: its gradient is a row sum, not a scatter-add
        full = full + model_effect[..., :, None]
    n_bench = loadings.shape[-2]
    pick = obs_model * n_bench + obs_bench
    if spec.link == "monotone-pooled":  # benchmark j's link on column j of the grid, then the pairs picked
        g = jnp.take(link_fn(full, spec.link, link_weights).reshape(full.shape[:-2] + (-1,)), pick, axis=-1)
    else:
        g = link_fn(jnp.take(full.reshape(full.shape[:-2] + (-1,)), pick, axis=-1), spec.link, link_weights)
    c = floor[obs_bench]
    return c + (1.0 - c) * g


class _LocScaleOnUnit(dist.Distribution):
    """A location-scale law truncated to [0, 1]: the parameters and support both noise laws share."""

    arg_constraints = {"loc": dist.constraints.real, "scale": dist.constraints.positive}
    support = dist.constraints.unit_interval
    reparametrized_params = ["loc", "scale"]

    def __init__(self, loc, scale, *, validate_args=None):
        self.loc, self.scale = jnp.broadcast_arrays(jnp.asarray(loc), jnp.asarray(scale))
        super().__init__(batch_shape=jnp.shape(self.loc), validate_args=validate_args)


class TruncatedNormal01(_LocScaleOnUnit):
    """Normal(loc, scale) truncated to [0, 1], for ``0 <= loc <= 1``.

    The same density as ``numpyro.distributions.TruncatedNormal(loc, scale,
    low=0, high=1)``, written for the likelihood's hot path: with
    ``u = (1 - loc) / (scale sqrt 2)`` and ``v = loc / (scale sqrt 2)``, both
    >= 0, the truncation mass is ``(erf(u) + erf(v)) / 2``, a sum of two
    non-negative terms (no cancellation, no branches), where the general
    form takes the difference of two normal CDFs with sign tests to keep it
    accurate. Its log density and gradient cost about a tenth as much
    (measured: ``benchmarks/results/NOTES.md``), and they are most of the
    sampler's work. Draws and the CDF are NumPyro's.
    """

    def log_prob(self, value):
        r = 1.0 / (self.scale * np.sqrt(2.0))
        z = (value - self.loc) * r
        mass2 = jax.lax.erf((1.0 - self.loc) * r) + jax.lax.erf(self.loc * r)  # twice the truncation mass
        return -z * z - jnp.log(self.scale) - jnp.log(mass2) + (np.log(2.0) - 0.5 * np.log(2.0 * np.pi))

    def _reference(self):
        return dist.TruncatedNormal(self.loc, self.scale, low=0.0, high=1.0)

    def sample(self, key, sample_shape=()):
        return self._reference().sample(key, sample_shape)

    def cdf(self, value):
        return self._reference().cdf(value)


class TruncatedLogistic01(_LocScaleOnUnit):
    """Logistic(loc, scale) truncated to [0, 1], for ``0 <= loc <= 1``.

    Heavier tails than the Normal (excess kurtosis 1.2) and a closed-form CDF
    and quantile, so the density, its gradient and exact draws (inverse CDF)
    are cheap. The truncation mass ``sigmoid((1 - loc) / s) - sigmoid(-loc / s)``
    is at least about 1/2 because the law's mean lies in [0, 1].
    """

    def _cdf_bounds(self):
        return jax.nn.sigmoid(-self.loc / self.scale), jax.nn.sigmoid((1.0 - self.loc) / self.scale)

    def log_prob(self, value):
        z = (value - self.loc) / self.scale
        lo, hi = self._cdf_bounds()
        return -z - 2.0 * jax.nn.softplus(-z) - jnp.log(self.scale) - jnp.log(hi - lo)

    def sample(self, key, sample_shape=()):
        lo, hi = self._cdf_bounds()
        shape = sample_shape + self.batch_shape
        u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.result_type(lo)).tiny, maxval=1.0)
        p = lo + u * (hi - lo)
        return jnp.clip(self.loc + self.scale * (jnp.log(p) - jnp.log1p(-p)), 0.0, 1.0)

    def cdf(self, value):
        lo, hi = self._cdf_bounds()
        return jnp.clip((jax.nn.sigmoid((value - self.loc) / self.scale) - lo) / (hi - lo), 0.0, 1.0)


def noise_dist(spec: ModelSpec, mean, sigma):
    """Distribution of a score around its mean, supported on [0, 1]:
    ``sigma`` is the Normal's sd (``noise="normal"``) or the logistic's scale
    (``noise="logistic"``, sd = sigma * pi / sqrt(3) before truncation)."""
    if spec.noise == "logistic":
        return TruncatedLogistic01(mean, sigma)
    return TruncatedNormal01(mean, sigma)


def pair_dist(spec: ModelSpec, params: dict, x, family, instruct, floor, obs_model, obs_bench):
    """Distribution of the scores of (model, benchmark) pairs given parameters.

    ``params`` maps site names (``alpha``, ``slopes``, ``loadings``,
    ``intercept``, ``sigma`` and optional ``instruct_shift``, ``instruct_slope``, ``family_slope``,
    ``model_effect``, and the link's ``link_weights`` or ``benchmark_link_weights``) to values
    with any leading batch dimensions. Returns (distribution, mean, skills).
    Shared by the model, the log-likelihood,
    replicated data and forecasts so the law is written once.
    """
    theta = skills_of(params["alpha"], family, x, params["slopes"], instruct, params.get("instruct_shift"),
                      params.get("family_slope"), params.get("instruct_slope"))
    m = pair_mean(spec, theta, params["loadings"], params["intercept"], floor, obs_model, obs_bench,
                  params.get("model_effect"), link_weights_of(spec, params))
    sigma = jnp.take(params["sigma"], obs_bench, axis=-1)
    return noise_dist(spec, m, sigma), m, theta


#: Prior of the per-benchmark noise sigma_j: LogNormal(log SIGMA_MEDIAN, SIGMA_LOG_SD) (see the module docstring)
SIGMA_MEDIAN = 0.04
SIGMA_LOG_SD = 0.5
#: Newton steps that place the offsets' sampling frame (:func:`offset_frame`)
OFFSET_NEWTON_STEPS = 2
#: The frame is used on leaderboards of at most this many benchmarks; with more, the offsets are sampled
#: non-centred (u = v): each is then held by many benchmarks, and on the 12-benchmark Sloth table the frame
#: made the gradient 2.3x as costly for trajectories only 40 % shorter (``benchmarks/results/NOTES.md``)
OFFSET_FRAME_MAX_BENCHMARKS = 5


def _link_and_slope(spec: ModelSpec, eta, weights):
    """g(eta) and g'(eta) of the link (for ``"monotone-pooled"``, eta (..., N, J) as in :func:`link_fn`)."""
    if spec.link == "sigmoid":
        g = jax.nn.sigmoid(eta)
        return g, g * (1.0 - g)
    if spec.link == "monotone-pooled":
        t, w = _pooled_terms(eta, weights)
        return tuple(jnp.swapaxes(jnp.sum(w * a, axis=-3), -1, -2) for a in (t, t * (1.0 - t)))
    t = _logistic_terms(eta, weights)
    return jnp.einsum("...m,...mn->...n", weights, t), jnp.einsum("...m,...mn->...n", weights, t * (1.0 - t))


def offset_frame(spec: ModelSpec, p: dict, s, x, family, instruct, floor, obs_model, obs_bench, y, obs_weight=None):
    """Centre m_i and scale r_i of the standardized offsets u_i = e_i / s given everything else.

    A Gaussian approximation of u_i's conditional posterior: Gauss-Newton
    steps from u = 0 on ``sum_j log N(y_ij | m_ij(u_i), sigma_j) - u_i^2 / 2``
    (the truncation ignored), with the link linearized at the current point::

        W_i = sum_j ((1 - c_j) g'(eta_ij) / sigma_j)^2,    r_i = (1 + s^2 W_i)^(-1/2)

    so r_i -> 1 (the plain non-centred u = v) where the data say little about
    model i, and r_i ~ sigma / (s g') where they pin its offset. Both are
    functions of the other parameters and the data only, so ``u = m + r v`` is
    an exact change of variables (the model adds its Jacobian); how good the
    approximation is only decides how round the posterior of v is.
    """
    theta = skills_of(p["alpha"], family, x, p["slopes"], instruct, p.get("instruct_shift"), p.get("family_slope"),
                      p.get("instruct_slope"))
    full = jnp.einsum("nk,jk->nj", theta, p["loadings"]) + p["intercept"][None, :]
    J = p["loadings"].shape[-2]
    eta0 = jnp.take(full.reshape(-1), obs_model * J + obs_bench)
    c = floor[obs_bench]
    inv_var = 1.0 / jnp.maximum(jnp.take(p["sigma"], obs_bench) ** 2, 1e-12)
    if obs_weight is not None:
        inv_var = jnp.where(obs_weight, inv_var, 0.0)
    n = x.shape[0]
    m = jnp.zeros(n, dtype=eta0.dtype)
    for _ in range(OFFSET_NEWTON_STEPS):
        if spec.link == "monotone-pooled":  # benchmark j's link on column j of the (N, J) grid
            g, slope = (jnp.take(a.reshape(-1), obs_model * J + obs_bench)
                        for a in _link_and_slope(spec, full + s * m[:, None], link_weights_of(spec, p)))
        else:
            g, slope = _link_and_slope(spec, eta0 + s * jnp.take(m, obs_model), link_weights_of(spec, p))
        d = (1.0 - c) * slope
        res = y - (c + (1.0 - c) * g)
        grad = s * jax.ops.segment_sum(d * res * inv_var, obs_model, n) - m
        prec = 1.0 + s * s * jax.ops.segment_sum(d * d * inv_var, obs_model, n)
        m = m + grad / prec
    return m, jax.lax.rsqrt(prec)


def skills_law(
    spec: ModelSpec,
    x,
    family,
    instruct,
    floor,
    obs_model,
    obs_bench,
    y=None,
    obs_weight=None,
    latent_tokens=None,
    standardization=None,
):
    """The hierarchical skills law (see the module docstring for the math).

    Parameters
    ----------
    spec : ModelSpec
        Static structure (K, J, F, anchors, link, loadings, noise).
    x : (N, 3) standardized covariates.
    family : (N,) int family index in 0..F-1.
    instruct : (N,) float, 1 for instruction-tuned models.
    floor : (J,) chance floors.
    obs_model, obs_bench : (n_obs,) int, the observed (model, benchmark) pairs.
    y : (n_obs,) observed scores, or None to sample them.
    obs_weight : (n_obs,) bool, optional mask: pairs with False are left out of
        the likelihood (cross-validation folds reuse one compiled program).
    latent_tokens : (n_latent_tokens,) int, the rows without a token count (their
        token columns of x are placeholders), with ``spec.n_latent_tokens > 0``.
    standardization : (8,) the standardizer's statistics (:func:`standardization_array`),
        with ``spec.n_latent_tokens > 0``.
    """
    K, J, F = spec.n_skills, spec.n_benchmarks, spec.n_families
    n_free = len(spec.free_loading_index)
    if spec.n_latent_tokens:  # first: every later use of x sees the latent rows filled in
        x = _token_regression(spec, x, latent_tokens, standardization)
    p = {}
    p["slopes"] = numpyro.sample("slopes", dist.Normal(0.0, 2.0).expand([3, K]).to_event(2))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0).expand([K]).to_event(1))
    z = numpyro.sample("family_z", dist.Normal(0.0, 1.0).expand([F, K]).to_event(2))
    p["alpha"] = numpyro.deterministic("alpha", tau * (z - z.mean(axis=0)))
    if spec.family_slopes:
        omega = numpyro.sample("family_slope_sd", dist.HalfNormal(0.5).expand([K]).to_event(1))
        u = numpyro.sample("family_slope_z", dist.Normal(0.0, 1.0).expand([F, K]).to_event(2))
        p["family_slope"] = numpyro.deterministic("family_slope", omega * (u - u.mean(axis=0)))
    if spec.instruct_shift:
        p["instruct_shift"] = numpyro.sample("instruct_shift", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    if spec.instruct_slope:
        p["instruct_slope"] = numpyro.sample("instruct_slope", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    if spec.loadings == "positive":
        free = numpyro.sample("loadings_free", dist.HalfNormal(2.0).expand([n_free]).to_event(1))
    else:
        free = numpyro.sample("loadings_free", dist.Normal(0.0, 2.0).expand([n_free]).to_event(1))
    p["loadings"] = numpyro.deterministic("loadings", assemble_loadings(spec, free))
    p["intercept"] = numpyro.sample("intercept", dist.Normal(0.0, 3.0).expand([J]).to_event(1))
    if spec.link in ("monotone", "monotone-pooled"):
        p["link_weights"] = numpyro.sample("link_weights", dist.Dirichlet(jnp.ones(len(LINK_KNOTS))))
    if spec.link == "monotone-pooled":  # each benchmark's weights around the shared ones, non-centred
        link_sd = numpyro.sample("link_sd", dist.HalfNormal(LINK_SD_SCALE))
        link_z = numpyro.sample("link_z", dist.Normal(0.0, 1.0).expand([J, len(LINK_KNOTS)]).to_event(2))
        p["benchmark_link_weights"] = numpyro.deterministic(
            "benchmark_link_weights", pooled_link_weights(p["link_weights"], link_sd, link_z))
    p["sigma"] = numpyro.sample("sigma", dist.LogNormal(np.log(SIGMA_MEDIAN), SIGMA_LOG_SD).expand([J]).to_event(1))
    if spec.model_effects:  # after every other parameter: with data, the offsets' coordinates depend on them
        s_model = numpyro.sample("model_sd", dist.HalfNormal(0.5))
        v = numpyro.sample("model_z", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
        if y is None or J > OFFSET_FRAME_MAX_BENCHMARKS:  # the plain non-centred offsets, e = s v
            u = v
        else:  # u = e / s = m + r v with m, r from the other parameters and the data: prior of u and Jacobian added
            m, r = offset_frame(spec, p, s_model, x, family, instruct, floor, obs_model, obs_bench, y, obs_weight)
            u = m + r * v
            numpyro.factor("model_z_frame", jnp.sum(0.5 * (v * v - u * u) + jnp.log(r)))
        p["model_effect"] = numpyro.deterministic("model_effect", s_model * u)

    d, _, theta = pair_dist(spec, p, x, family, instruct, floor, obs_model, obs_bench)
    numpyro.deterministic("skills", theta)
    if obs_weight is not None:
        d = d.mask(obs_weight)
    numpyro.sample("y", d, obs=y)


def describe(spec: ModelSpec) -> str:
    """The law of ``spec`` in plain text, one line per equation: what the report shows.

    Generated from the spec (not copied from the docstring above), so a
    report always states the law that was fitted: each option adds or
    changes its own line.
    """
    link = {"sigmoid": "sigmoid", "monotone": "g", "monotone-pooled": "g_j"}[spec.link]
    lines = [
        "x_i      = standardized (log S_i, log T_i, (log S_i - m_S)(log T_i - m_T))   S params (B), T tokens (T)",
        "theta_i  = alpha_f(i) + B' x_i" + (" + delta instruct_i" if spec.instruct_shift else "")
        + (" + delta_S instruct_i x_i,logS" if spec.instruct_slope else "")
        + (" + gamma_f(i) x_i,logS" if spec.family_slopes else "") + f"   {spec.n_skills} latent skill(s)",
        "alpha_f  = tau (z_f - mean z),  z_f ~ Normal(0, I)          family efficiency, partially pooled",
    ]
    if spec.family_slopes:
        lines.append("gamma_f  = omega (u_f - mean u),  u_f ~ Normal(0, I)        family slope in log S, partially pooled")
    if spec.model_effects:
        lines.append("e_i      = s v_i,  v_i ~ Normal(0, 1)                      the model's own offset, partially pooled")
    lines.append(f"m_ij     = c_j + (1 - c_j) {link}(lambda_j' theta_i + b_j" + (" + e_i" if spec.model_effects else "")
                 + ")   c_j chance floor")
    if spec.link == "monotone":
        lines.append("g(eta)   = sum_m w_m sigmoid(eta - c_m + sum_l w_l c_l),  w ~ Dirichlet(1)   learned monotone link")
    if spec.link == "monotone-pooled":
        lines.append("g_j(eta) = sum_m w_jm sigmoid(eta - c_m + sum_l w_jl c_l)               learned link per benchmark")
        lines.append(f"w_j      = softmax(log w + s_g (z_j - mean z)),  z_j ~ Normal(0, I),  w ~ Dirichlet(1),  "
                     f"s_g ~ HalfNormal({LINK_SD_SCALE:g})   partially pooled")
    if spec.n_latent_tokens:
        lines.append(f"x_i,T    = a + b x_i,S + s e_i,  e_i ~ Normal(0, 1)   latent for the {spec.n_latent_tokens} "
                     "model(s) without tokens; a, b ~ Normal(0, 1), s ~ HalfNormal(1)")
    lines.append("Lambda   : unit loading of skill k on its anchor, zero on later anchors, "
                 + ("others positive" if spec.loadings == "positive" else "others real"))
    noise = "TruncatedNormal" if spec.noise == "normal" else "TruncatedLogistic"
    lines.append(f"y_ij     ~ {noise}(m_ij, sigma_j) on [0, 1]             misfit per benchmark; missing scores left out")
    return "\n".join(lines)
