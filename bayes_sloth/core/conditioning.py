r"""Forecasts conditioned on a new model's observed scores, without refitting the law.

A new model often arrives with a few scores already measured. Its other
scores are then forecast from the posterior of the fitted law *and* those
scores: for the rows of one family (a *group*; rows of one family share its
efficiency), with fitted-law parameters phi (everything the fit sampled) and
the group's own latents u,

    p(phi, u | D, y_obs)  propto  p(phi | D) p(u | phi) p(y_obs | u, phi)

where u holds, in the law's non-centred coordinates (each Normal(0, 1) a
priori), the offset v_i of every new row with observed scores (e_i = s v_i)
and, for a never-seen family, its efficiency z (alpha_new = tau z; and its
slope with ``family_slopes``). A seen family's efficiency alpha_f is part of
phi. This is computed for every posterior draw phi_s by nested importance
sampling:

1. inner level, per draw: the mode u*_s of ``log p(u | phi_s) + log p(y_obs
   | u, phi_s)`` by damped Newton steps until none moves (where the
   negative Hessian is not positive definite, it is shifted by the
   Gershgorin bound of its smallest eigenvalue), the curvature there
   saddle-free (the Hessian's eigenvalues in absolute value, floored at the
   prior's precision, 1), then M draws from a defensive mixture (Hesterberg 1995)
   q_s = 0.9 t_5(u*_s, H_s^-1) + 0.1 p(u | phi_s), weights
   ``w_sm = p(u_sm | phi_s) p(y_obs | u_sm, phi_s) / q_s(u_sm)`` (bounded
   by 10 x the likelihood, so one wild draw cannot dominate); their mean is
   an unbiased estimate of the marginal likelihood p(y_obs | phi_s), and
   their effective sample size says how well q_s covers the latent posterior;
2. draw level: the weights ``p-hat(y_obs | phi_s)``, Pareto-smoothed
   (PSIS, Vehtari et al. 2024), move the fitted posterior towards the draws
   that explain the observed scores; this is what updates a *seen* family's
   efficiency (and, slightly, every other parameter) without a refit. Their
   Pareto k and effective sample size say whether the fitted posterior still
   covers the conditioned one: k > 0.7 means the observed scores are far
   from what the fit expects, and the model should be refitted with them in;
3. output: the posterior draws are resampled with these weights
   (systematic resampling with one uniform shared by every group, so a group
   whose weights are flat keeps every draw in place), and for each output
   draw one latent u is picked among the M in proportion to its weight; the
   scores of all the group's rows (observed benchmarks too: a replicate of
   the measured score) are drawn from the law at (phi, u).

A forecast of every observed pair from the group's other scores (what
:meth:`~bayes_sloth.core.estimator.SkillsLaw.predict` gives) needs one
conditioning per score left out: :func:`condition_runs` does them together,
the inner level once (the proposal built on every score) and each left-out
run by weighting the same latent draws with the likelihood of its own scores.

Every likelihood evaluation and every forecast goes through the law's own
:func:`bayes_sloth.core.model.pair_dist` and :func:`~bayes_sloth.core.model.noise_dist`.
Random numbers come from streams keyed by the seed, the family's name (its
latents) and the row's name (fresh offsets and noise of its rows), so a
group's conditional forecast depends on the fit, its rows, its observed
scores and the seed, not on the other groups asked for at the same time.

Each group is conditioned on its own scores only: the tiny information
that one family's new scores carry about another family's forecast
(through the shared parameters) is left out, so groups can be asked for
together without their weights multiplying (which would collapse the
effective sample size with a few dozen groups). Draws of two groups are
therefore at the same posterior draw only where their resampling agrees:
``source_draw`` records which one each output draw used.

Which benchmark to observe next (:func:`information_gain`): the expected
reduction of the targets' predictive variance from observing benchmark b,
estimated from the joint predictive draws (after conditioning on what is
already observed) by the linear-Gaussian identity
``E[Var(T | y_b)] ~ Var(T) - Cov(T, y_b)^2 / Var(y_b)``, and, for the
``"entropy"`` criterion, the Gaussian mutual information
``-0.5 log(1 - c' Sigma_T^-1 c / Var(y_b))`` between the targets and y_b.
The linear predictor is the best linear one, so the first is a lower bound
on the exact expected reduction of the mean squared error of E[T | y_b].
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .errors import InputError
from .idata import real_dtype
from .model import ModelSpec, noise_dist, pair_dist
from .prediction import flat_posterior  # noqa: F401  (the posterior sites a forecast reads: the same here)
from .programs import bounded_jit
from .sites import member_size, pooled

#: Inner importance draws per posterior draw (chosen on held-out models of the real table: docs/decisions.md,
#: "Conditioning: 32 latent draws").
N_LATENT = 32
#: Weight of the prior in the defensive mixture proposal.
DEFENSIVE = 0.1
#: Degrees of freedom of the Student-t component of the proposal.
T_DOF = 5.0
_T_DOF_INT = int(T_DOF)
assert _T_DOF_INT == T_DOF, "the t proposal's chi-square is drawn as a sum of T_DOF squared normals"
#: Damped Newton steps towards the latent mode: at most this many, and none after a step moved no
#: coordinate by more than NEWTON_TOL (prior standard deviations; the mode only centres the proposal, whose
#: importance weights correct what is left). On the real table's held-out models most draws stop after 3-5
#: steps, and 4 fixed steps gave the same inner effective sample size as 12 (docs/decisions.md).
NEWTON_STEPS = 12
NEWTON_TOL = 1e-3
#: Pareto k above which the draw-level weights cannot be trusted (Vehtari et al. 2024).
K_TRUST = 0.7
#: Mean inner effective sample size (as a fraction of the M latent draws) below which the inner level is suspect.
INNER_TRUST = 0.05

#: Fixed codes mixed into the seed's key: one stream for the latents, one for rows, one for resampling.
_LATENT_STREAM, _ROW_STREAM, _RESAMPLE_STREAM = 0x1C0D, 0x2C0D, 0x3C0D


@dataclass(frozen=True)
class GroupLayout:
    """Static structure of one conditioned group: what its latent vector u holds.

    ``n_rows`` rows; ``unseen``: a never-seen family (u starts with the
    coordinates of each of its pooled effects, in the model's order: its
    efficiency, K values, then its slope with ``family_slopes``);
    ``latent_rows``: positions of the rows whose pooled model effects (the
    offset) are latent (new rows with observed scores), after those.
    """

    n_rows: int
    unseen: bool
    latent_rows: tuple[int, ...]

    def size(self, spec: ModelSpec) -> int:
        fam = sum(member_size(spec, s) for s in pooled(spec, "family")) if self.unseen else 0
        return fam + len(self.latent_rows) * sum(member_size(spec, s) for s in pooled(spec, "model"))


def _group_params(spec: ModelSpec, layout: GroupLayout, p: dict, z, fam, midx, fresh):
    """One posterior draw's parameters for the group's rows (family index 0 for all), latents u = z filled in:
    a never-seen family's pooled effects are ``scale * z`` (the population draw of
    :func:`~bayes_sloth.core.sites.new_members`, here with z latent), a latent row's offset likewise."""
    q = dict(p)
    o = 0
    for s in pooled(spec, "family"):
        if layout.unseen:
            size = member_size(spec, s)
            q[s.name] = (p[s.scale] * z[o:o + size].reshape(jnp.shape(p[s.scale])))[None]
            o += size
        else:
            q[s.name] = p[s.name][fam][None]
    for s in pooled(spec, "model"):
        e = jnp.where(midx >= 0, jnp.take(p[s.name], jnp.maximum(midx, 0)), p[s.scale] * fresh)
        if layout.latent_rows:
            rows = np.asarray(layout.latent_rows)
            e = e.at[rows].set(p[s.scale] * z[o:o + len(rows)])
            o += len(rows)
        q[s.name] = e
    return q


def _pair_loglik(spec, layout, p, z, fam, x, instruct, floor, y_obs, om, ob, midx):
    """log p(y_ij | u = z, phi = p) of each of the group's observed pairs (om, ob), (P,), through the law's
    pair_dist (only those pairs are evaluated: a row with 2 scores of 12 costs 2 pairs)."""
    n = x.shape[0]
    q = _group_params(spec, layout, p, z, fam, midx, jnp.zeros(n, dtype=y_obs.dtype))
    d, _, _ = pair_dist(spec, q, x, jnp.zeros(n, dtype=jnp.int32), instruct, floor, om, ob)
    return d.log_prob(y_obs)


def _weighted(lp, w):
    """Sum of the pairs' log-likelihoods ``lp`` (..., P) that the run's ``w`` (P,) conditions on."""
    return jnp.sum(jnp.where(w > 0, lp, 0.0), axis=-1)


def _cho_solve(P, g):
    """P^-1 g for a small symmetric P by a Cholesky factorization written in loops over its columns (NaN where
    P is not positive definite). XLA's LAPACK Cholesky inside the batched Newton loop stalled the CPU
    runtime on a never-seen family's group (seen with jax 0.10.2); this one is plain array operations."""
    d = P.shape[-1]
    idx = jnp.arange(d)

    def column(j, L):
        v = P[:, j] - L @ L[j, :]  # L's columns from j on are still zero
        ljj = jnp.sqrt(v[j])
        return L.at[:, j].set(jnp.where(idx > j, v / ljj, jnp.where(idx == j, ljj, 0.0)))

    L = jax.lax.fori_loop(0, d, column, jnp.zeros_like(P))
    y = jax.lax.fori_loop(0, d, lambda i, y: y.at[i].set((g[i] - L[i] @ y) / L[i, i]), jnp.zeros_like(g))
    return jax.lax.fori_loop(0, d, lambda k, x: x.at[d - 1 - k].set((y[d - 1 - k] - L[:, d - 1 - k] @ x)
                                                                     / L[d - 1 - k, d - 1 - k]), jnp.zeros_like(g))


@bounded_jit(static_argnums=(0, 1, 2, 3))
def _inner(spec, layout, M, defensive, flat, fam, x, instruct, floor, y_obs, w, om, ob, midx, key):
    """Per posterior draw: latent mode given every observed pair, M proposal draws, and for each run r (a row
    of ``w`` (R, P): which of the P observed pairs it conditions on) their log weights. Returns (z (D, M, d),
    lw (R, D, M)).

    The proposal is built for the first run (``w[0]``: every observed pair, 0 only for padding) and serves the others
    by importance weighting (their latent posteriors lie between the prior and the first's, which the
    defensive mixture covers); each run's inner effective sample size measures how well.
    ``defensive``: the prior's weight in the proposal (DEFENSIVE; 1.0 draws from the prior alone, the plain
    importance sampler the Laplace-centred proposal is measured against)."""
    d = layout.size(spec)
    D = flat["sigma"].shape[0]
    dtype = flat["sigma"].dtype
    run_w = w  # (R, P); ``w`` below is the Hessian's eigenvalues

    def one(p, k):
        def pairs(z):
            return _pair_loglik(spec, layout, p, z, fam, x, instruct, floor, y_obs, om, ob, midx)

        def loglik(z):  # every observed pair (the first run's); padding pairs have weight 0 there too
            return _weighted(pairs(z), run_w[0])

        def logpost(z):
            return -0.5 * jnp.dot(z, z) + loglik(z)

        grad, hess = jax.grad(logpost), jax.hessian(logpost)

        def precision(z):  # saddle-free: |eigenvalues|, floored at the prior's precision
            w, V = jnp.linalg.eigh(-hess(z))
            return jnp.maximum(jnp.abs(w), 1.0), V

        def direction(z):
            """The Newton step where -H is positive definite, else a step with -H shifted by the
            Gershgorin bound of its smallest eigenvalue (every eigenvalue then at least the prior's precision):
            two Cholesky factorizations, where an eigendecomposition per step cost 10 times more at d = 7."""
            P = -hess(z)
            g = grad(z)
            off = jnp.sum(jnp.abs(P), axis=1) - jnp.abs(jnp.diagonal(P))
            shift = jnp.maximum(0.0, 1.0 - jnp.min(jnp.diagonal(P) - off))
            plain = _cho_solve(P, g)
            shifted = _cho_solve(P + shift * jnp.eye(d, dtype=dtype), g)
            return jnp.where(jnp.all(jnp.isfinite(plain)), plain, shifted)

        def newton(carry):
            z, i, _ = carry
            step = direction(z)
            ts = jnp.asarray([1.0, 0.5, 0.25, 0.1, 0.0], dtype)
            vals = jax.vmap(lambda t: logpost(z + t * step))(ts)
            vals = jnp.where(jnp.isfinite(vals), vals, -jnp.inf)
            moved = ts[jnp.argmax(vals)] * step
            return z + moved, i + 1, jnp.max(jnp.abs(moved))

        def going(carry):
            _, i, last = carry
            return (i < NEWTON_STEPS) & (last > NEWTON_TOL)

        zs, _, _ = jax.lax.while_loop(going, newton, (jnp.zeros(d, dtype), 0, jnp.asarray(jnp.inf, dtype)))
        w, V = precision(zs)
        L = V / jnp.sqrt(w)[None, :]  # Sigma = V diag(1/w) V' = L L'
        k1, k2, k3, k4 = jax.random.split(k, 4)
        eps = jax.random.normal(k1, (M, d), dtype)
        # chi-square with T_DOF (an integer) degrees of freedom as a sum of squared normals: exact, and a
        # tenth of the time of jax.random.gamma's rejection sampler (the inner level's largest cost, measured)
        chi = jnp.sum(jax.random.normal(k2, (_T_DOF_INT, M), dtype) ** 2, axis=0)
        t_draw = zs + (eps @ L.T) * jnp.sqrt(T_DOF / chi)[:, None]
        prior_draw = jax.random.normal(k3, (M, d), dtype)
        from_prior = jax.random.uniform(k4, (M,), dtype) < defensive
        zm = jnp.where(from_prior[:, None], prior_draw, t_draw)
        # log densities: the prior N(0, I), the t (Sigma^-1 = V diag(w) V'), the mixture
        log_prior = -0.5 * jnp.sum(zm * zm, axis=1) - 0.5 * d * np.log(2 * np.pi)
        r = (zm - zs) @ V * jnp.sqrt(w)[None, :]
        maha = jnp.sum(r * r, axis=1)
        log_t = (jax.scipy.special.gammaln((T_DOF + d) / 2) - jax.scipy.special.gammaln(T_DOF / 2)
                 - 0.5 * d * np.log(T_DOF * np.pi) + 0.5 * jnp.sum(jnp.log(w))
                 - 0.5 * (T_DOF + d) * jnp.log1p(maha / T_DOF))
        log_q = log_prior if defensive >= 1.0 else jnp.logaddexp(np.log(1 - defensive) + log_t,
                                                                  np.log(defensive) + log_prior)
        lp = jax.vmap(pairs)(zm)  # (M, P)
        lw = (log_prior - log_q)[None, :] + jax.vmap(lambda wr: _weighted(lp, wr))(run_w)  # (R, M)
        return zm, jnp.where(jnp.isfinite(lw), lw, -jnp.inf)

    keys = jax.random.split(key, D)
    z, lw = jax.vmap(one)(flat, keys)
    return z, jnp.swapaxes(lw, 0, 1)


@bounded_jit(static_argnums=(0,))
def _exact_loglik(spec, flat, fam, x, instruct, floor, y_obs, w, om, ob, midx):
    """log p(y_obs | phi_s) per run and draw, (R, D), when the group has no latent (a seen family, no model
    offsets)."""
    layout = GroupLayout(int(x.shape[0]), False, ())
    z = jnp.zeros(0, flat["sigma"].dtype)
    lp = jax.vmap(lambda p: _pair_loglik(spec, layout, p, z, fam, x, instruct, floor, y_obs, om, ob, midx))(flat)
    return jax.vmap(lambda wr: _weighted(lp, wr))(w)


@bounded_jit(static_argnums=(0, 1))
def _final(spec, layout, flat, source, z, fam, x, instruct, floor, midx, key_rows, row_codes):
    """Draws of the law and the scores of the group's rows at (phi_source[r, d], z[r, d]) for every run r and
    output draw d: (mu, score, theta), each (R, D, n, .). A row's fresh offset and noise are the same in every
    run (streams of the row's name), so runs differ only through their draws and latents."""
    n = x.shape[0]
    J = spec.n_benchmarks
    D = source.shape[1]
    dtype = flat["sigma"].dtype
    key_e, key_y = jax.random.split(key_rows)
    # fresh offsets of the rows without a latent one: a stream per row name
    fresh = jax.vmap(lambda c: jax.random.normal(jax.random.fold_in(key_e, c), (D,), dtype))(row_codes).T  # (D, n)
    om, ob = jnp.divmod(jnp.arange(n * J), J)

    def run(src, zr):
        picked = jax.tree_util.tree_map(lambda a: jnp.take(a, src, axis=0), flat)

        def one(p, zd, fd):
            q = _group_params(spec, layout, p, zd, fam, midx, fd)
            _, m, theta = pair_dist(spec, q, x, jnp.zeros(n, dtype=jnp.int32), instruct, floor, om, ob)
            return m.reshape(n, J), theta

        mu, theta = jax.vmap(one)(picked, zr, fresh)
        sigma = jnp.broadcast_to(picked["sigma"][:, None, :], mu.shape)

        def row_scores(code, m, s):
            return noise_dist(spec, m, s).sample(jax.random.fold_in(key_y, code))

        score = jax.vmap(row_scores, in_axes=(0, 1, 1), out_axes=1)(row_codes, mu, sigma)
        return mu, score, theta

    return jax.vmap(run)(source, z)


@bounded_jit
def _pick(z, lw, source, key):
    """The latent of each run's output draws, (R, D, d): output draw t of run r takes, among the M latents of
    posterior draw source[r, t], one in proportion to its weight lw[r, source[r, t]] (one stream for every
    run, so each picks as it would alone)."""
    logits = jnp.take_along_axis(lw, source[:, :, None], axis=1)  # (R, D, M)
    m = jax.vmap(lambda lg: jax.random.categorical(key, lg, axis=-1))(jnp.where(jnp.isfinite(logits), logits, -1e30))
    return z[source, m]


def _psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalized weights and the Pareto k of ``log_w`` (flat weights: k = -inf)."""
    import warnings

    import arviz as az

    lw = np.asarray(log_w, dtype=float)
    finite = np.isfinite(lw)
    if not finite.any():
        return np.full(len(lw), 1.0 / len(lw)), float("inf")
    lw = np.where(finite, lw, lw[finite].min() - 1e3)
    if np.ptp(lw) < 1e-12:
        return np.full(len(lw), 1.0 / len(lw)), float("-inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed, k = az.psislw(lw - lw.max())
    w = np.exp(np.asarray(smoothed, dtype=float) - np.max(smoothed))
    return w / w.sum(), float(k)


def _systematic(weights: np.ndarray, u: float) -> np.ndarray:
    """Systematic resampling: output d takes the draw whose weight interval holds (d + u) / D (flat weights: d)."""
    D = len(weights)
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    return np.minimum(np.searchsorted(cdf, (np.arange(D) + u) / D, side="right"), D - 1)


@dataclass
class GroupResult:
    """One conditioned group: draws of its rows and the trust diagnostics of the conditioning."""

    rows: np.ndarray  # positions of the group's rows among the rows asked for
    mu: np.ndarray  # (D, n, J)
    score: np.ndarray  # (D, n, J)
    theta: np.ndarray  # (D, n, K)
    source: np.ndarray  # (D,) flat index of the fitted posterior draw each output draw uses
    pareto_k: float
    importance_ess: float  # effective sample size of the draw-level weights
    inner_ess: float  # mean over draws of the inner effective sample size, as a fraction of M
    n_pairs: int
    n_latent: int


def condition_group(spec: ModelSpec, flat: dict, *, x, instruct, floor, y, mask, model_index, family: int,
                    family_code: int, row_codes, seed: int, n_latent: int = N_LATENT,
                    draw_weights: bool = True, proposal: str = "laplace") -> GroupResult:
    """Conditional draws of one group's rows (one family) given their observed scores; see the module docstring.

    ``x`` (n, 3) standardized covariates, ``instruct`` (n,), ``floor`` (J,),
    ``y`` (n, J) scores and ``mask`` (n, J) the pairs to condition on,
    ``model_index`` (n,) index among the fitted models or -1 (a new row);
    ``family`` the fitted family's index, or -1 for a never-seen family whose
    name's :func:`~bayes_sloth.core.prediction.stream_code` is ``family_code``.
    ``draw_weights=False`` keeps the fitted posterior's draws as they are and
    updates only the group's latents (a "cut" conditioning, for comparison);
    ``proposal="prior"`` draws the latents from their prior (no Laplace step),
    also for comparison.
    """
    return condition_runs(spec, flat, x=x, instruct=instruct, floor=floor, y=y, masks=np.asarray(mask)[None],
                          model_index=model_index, family=family, family_code=family_code, row_codes=row_codes,
                          seed=seed, n_latent=n_latent, draw_weights=draw_weights, proposal=proposal)[0]


def condition_runs(spec: ModelSpec, flat: dict, *, x, instruct, floor, y, masks, model_index, family: int,
                   family_code: int, row_codes, seed: int, n_latent: int = N_LATENT,
                   draw_weights: bool = True, proposal: str = "laplace") -> list[GroupResult]:
    """:func:`condition_group` for several masks of one group at once (``masks`` (R, n, J), each a subset of
    the first), in one compiled program: what :meth:`SkillsLaw.predict` needs to forecast every observed pair
    from the group's other scores (the first mask: every score; then one run per score left out).

    The first run is :func:`condition_group`'s. The others share its inner level: the latent mode and the
    proposal are found once, given every score, and each run weights the same latent draws by the
    likelihood of its own scores (importance sampling; its latent posterior lies between the prior and the
    first run's, which the t proposal and its defensive prior component cover). Its inner effective sample
    size says how well; the draw-level weights, resampling and forecasts are its own. The latent vector is
    laid out by the first mask: a new row with scores there keeps its offset latent in every run (where a
    run leaves it no score the latent's posterior is its prior, so the forecast has the same distribution as
    with a fresh offset). One run costs what :func:`condition_group` costs; each further run, its weights,
    resampling and forecast draws.
    """
    real = real_dtype()
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise InputError(f"masks must be (runs, rows, benchmarks), got shape {masks.shape}")
    R, n, _ = masks.shape
    midx = np.asarray(model_index, dtype=np.int32)
    union = masks[0]
    empty = np.flatnonzero(~masks.any(axis=(1, 2)))
    if len(empty):
        raise InputError(f"condition_group needs at least one observed pair to condition on (run {empty[0]} has "
                         "none)")
    beyond = np.flatnonzero((masks & ~union).any(axis=(1, 2)))
    if len(beyond):
        raise InputError(f"every mask of condition_runs must be a subset of the first: run {beyond[0]} conditions "
                         "on a pair the first does not")
    if not _is_count(n_latent) or n_latent < 2:
        raise InputError(f"n_latent must be an integer of at least 2, got {n_latent!r}")
    if proposal not in ("laplace", "prior"):
        raise InputError(f"proposal must be 'laplace' or 'prior', got {proposal!r}")
    latent_rows = tuple(int(i) for i in np.flatnonzero(union.any(axis=1) & (midx < 0))) if spec.model_effects else ()
    layout = GroupLayout(int(n), bool(family < 0), latent_rows)
    d = layout.size(spec)
    D = int(flat["sigma"].shape[0])
    om, ob = (a.astype(np.int32) for a in np.nonzero(union))  # the observed pairs, row-major
    y_obs = np.asarray(y, dtype=float)[om, ob]
    if not np.isfinite(y_obs).all():
        raise InputError("condition_group: an observed pair (mask True) has no finite score")
    w = masks[:, om, ob]  # (R, P): which observed pairs each run conditions on
    # pairs and runs padded to powers of two (padding: weight 0, and runs whose results are dropped), so that
    # groups with different numbers of scores share compiled programs instead of compiling one each
    P, Pb, Rb = len(om), _bucket(len(om)), _bucket(R)
    om, ob = (np.concatenate([a, np.zeros(Pb - P, np.int32)]) for a in (om, ob))
    y_obs = np.concatenate([y_obs, np.full(Pb - P, 0.5)])
    w = np.pad(w, ((0, Rb - R), (0, Pb - P)))
    fam = jnp.int32(max(family, 0))
    x, instruct, floor = (jnp.asarray(v, real) for v in (x, instruct, floor))
    pairs = dict(y_obs=jnp.asarray(y_obs, real), w=jnp.asarray(w), om=jnp.asarray(om), ob=jnp.asarray(ob),
                 midx=jnp.asarray(midx))
    base = jax.random.PRNGKey(seed)
    key_latent = jax.random.fold_in(jax.random.fold_in(base, _LATENT_STREAM), family_code)
    if d:
        z, lw_runs = _inner(spec, layout, int(n_latent), DEFENSIVE if proposal == "laplace" else 1.0, flat, fam, x,
                            instruct, floor, key=key_latent, **pairs)  # z (D, M, d), lw_runs (Rb, D, M)
        lw = np.asarray(lw_runs, dtype=float)[:R]
        top = lw.max(axis=2, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        ew = np.exp(lw - top)
        log_phat = np.log(ew.mean(axis=2)) + top[..., 0]
        inner_ess = np.mean(ew.sum(axis=2) ** 2 / np.maximum((ew ** 2).sum(axis=2), 1e-300), axis=1) / n_latent
    else:
        log_phat = np.asarray(_exact_loglik(spec, flat, fam, x, instruct, floor, **pairs), dtype=float)[:R]
        inner_ess = np.ones(R)
    u = float(jax.random.uniform(jax.random.fold_in(base, _RESAMPLE_STREAM)))
    sources, ks, esss = [], [], []
    for r in range(R):
        if draw_weights:
            weights, k = _psis(log_phat[r])
        else:
            weights, k = np.full(D, 1.0 / D), float("nan")
        esss.append(float(1.0 / np.sum(weights ** 2)))
        ks.append(k)
        sources.append(_systematic(weights, u))
    source = np.stack(sources + sources[:1] * (Rb - R))  # (Rb, D): padding runs repeat the first
    if d:
        z_out = _pick(z, lw_runs, jnp.asarray(source), jax.random.fold_in(key_latent, 1))
    else:
        z_out = jnp.zeros((Rb, D, 0), real)
    key_rows = jax.random.fold_in(base, _ROW_STREAM)
    mu, score, theta = (np.asarray(a) for a in _final(spec, layout, flat, jnp.asarray(source), z_out, fam, x,
                                                      instruct, floor, pairs["midx"], key_rows,
                                                      jnp.asarray(np.asarray(row_codes, dtype=np.int32))))
    return [GroupResult(np.arange(n), mu[r], score[r], theta[r], source[r], ks[r], esss[r], float(inner_ess[r]),
                        int(masks[r].sum()), int(n_latent) if d else 0) for r in range(R)]


def _bucket(k: int) -> int:
    """The smallest power of two at least k (k >= 1)."""
    return 1 << (int(k) - 1).bit_length()


def _is_count(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def trust_problems(result: GroupResult, n_draws: int) -> list[str]:
    """Why a group's conditioning cannot be trusted (empty if it can)."""
    out = []
    if np.isfinite(result.pareto_k) and result.pareto_k > K_TRUST:
        out.append(f"Pareto k {result.pareto_k:.2f} > {K_TRUST}")
    elif result.pareto_k == float("inf"):
        out.append("every draw gives the observed scores zero likelihood")
    if result.n_latent and result.inner_ess < INNER_TRUST:
        out.append(f"mean inner effective sample size {result.inner_ess:.1%} of the latent draws")
    return out


# ------------------------------------------------------------- which benchmark next
CRITERIA = ("variance", "entropy")


def information_gain(draws: np.ndarray, candidates, targets_of, criterion: str = "variance") -> pd.DataFrame:
    """Expected information about the targets from observing each candidate benchmark.

    ``draws`` (n_draws, J): joint predictive draws of one model's scores
    (noise included, after conditioning on what it already has observed);
    ``candidates``: column indices to rank; ``targets_of(b)``: the target
    column indices for candidate b. Returns one row per candidate with
    ``variance_reduction`` (sum over targets of Cov(y_t, y_b)^2 / Var(y_b):
    the linear-Gaussian expected reduction of predictive variance),
    ``target_variance`` (sum of the targets' predictive variances),
    ``fraction`` (their ratio) and ``information`` (Gaussian mutual
    information between the targets and y_b, nats); ``score`` is the one
    the criterion ranks by.
    """
    if criterion not in CRITERIA:
        raise InputError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    X = np.asarray(draws, dtype=float)
    X = X - X.mean(axis=0)
    cov = X.T @ X / max(len(X) - 1, 1)
    rows = []
    for b in candidates:
        t = np.asarray(targets_of(b), dtype=int)
        vb = cov[b, b]
        if len(t) == 0 or vb <= 0:
            rows.append((b, 0.0, float(np.trace(cov[np.ix_(t, t)])) if len(t) else 0.0, 0.0))
            continue
        c = cov[t, b]
        red = float(np.sum(c ** 2) / vb)
        St = cov[np.ix_(t, t)] + 1e-12 * np.eye(len(t))
        r2 = float(c @ np.linalg.solve(St, c) / vb)
        info = float(-0.5 * np.log(max(1.0 - min(r2, 1.0 - 1e-12), 1e-12)))
        rows.append((b, red, float(np.trace(cov[np.ix_(t, t)])), info))
    out = pd.DataFrame(rows, columns=["index", "variance_reduction", "target_variance", "information"])
    out["fraction"] = np.where(out["target_variance"] > 0, out["variance_reduction"] / out["target_variance"], 0.0)
    out["score"] = out["variance_reduction"] if criterion == "variance" else out["information"]
    return out
