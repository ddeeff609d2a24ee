r"""A mass matrix for NUTS learned from draws and gradients: diagonal plus a low-rank correction.

NUTS needs as many leapfrog steps per draw as the ratio of the posterior's widest to its narrowest scale,
measured in the metric of its mass matrix. A diagonal metric fixes the scale of each coordinate but not
directions that mix many of them: the skill-scale ridges of a factor model, a slope that trades against every
family's efficiency. Their eigenvalues, in a diagonal metric, span three or four orders of magnitude.

This module estimates, from warm-up draws x and the gradients g of the potential at them (as nutpie does,
Seyboldt 2023): a diagonal D (the Fisher-divergence optimum ``D_i^2 = sd(x_i) / sd(g_i)``, exact for any
Gaussian with diagonal covariance), then, in the scaled coordinates ``x / sqrt(D)``, the subspace spanned by
the draws' leading principal directions (the widest) and the gradients' (the narrowest: for a Gaussian the
gradients' covariance is the inverse covariance), and on that subspace the covariance S that minimises the
Fisher divergence, the geometric mean of the draws' covariance A and the inverse of the gradients' B::

    S = B^-1/2 (B^1/2 A B^1/2)^1/2 B^-1/2

The sampler then runs in coordinates u with ``x = mu + P u``,
``P = diag(sqrt D) (I + U (s - 1) U')`` where ``U s^2 U'`` is S's eigen-decomposition kept to the directions
with ``s^2`` outside ``[1 / cutoff, cutoff]`` (the others are left to the diagonal). P is applied in
O(n rank), the potential of u is that of x (a linear map: its Jacobian is a constant), so the posterior is
the same; only the sampler's view of it is rounder.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

#: Leading directions taken from the draws and from the gradients (at most this many each).
MAX_RANK = 20
#: Directions whose variance, relative to the diagonal, lies within [1 / CUTOFF, CUTOFF] are left alone.
CUTOFF = 2.0
#: Shrinkage of the subspace covariances toward the identity (keeps them positive definite from few draws).
SHRINK = 1e-3


def identity(n: int, dtype=np.float32) -> dict:
    """The preconditioner that changes nothing: x = u."""
    return {"mu": np.zeros(n, dtype), "d": np.ones(n, dtype), "U": np.zeros((n, 1), dtype),
            "s": np.zeros(1, dtype), "s_inv": np.zeros(1, dtype)}


def to_x(pre: dict, u):
    """x = mu + diag(sqrt D) (u + U ((s - 1) * (U' u))), for u (..., n)."""
    w = u + ((u @ pre["U"]) * pre["s"]) @ pre["U"].T
    return pre["mu"] + pre["d"] * w


def to_u(pre: dict, x):
    """The inverse of :func:`to_x`: u = (I + U ((1/s - 1) * U')) ((x - mu) / sqrt(D))."""
    w = (x - pre["mu"]) / pre["d"]
    return w + ((w @ pre["U"]) * pre["s_inv"]) @ pre["U"].T


def _sym_sqrt(M: np.ndarray, power: float = 0.5) -> np.ndarray:
    w, V = np.linalg.eigh((M + M.T) / 2)
    return (V * np.maximum(w, 1e-12) ** power) @ V.T


def _leading(Z: np.ndarray, k: int) -> np.ndarray:
    """The k leading principal directions (columns, orthonormal) of the rows of Z."""
    if k <= 0 or len(Z) < 2:
        return np.zeros((Z.shape[1], 0))
    _, _, Vt = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
    return Vt[:k].T


def estimate(x: np.ndarray, g: np.ndarray, *, max_rank: int = MAX_RANK, cutoff: float = CUTOFF,
             dtype=np.float32, mask=None) -> dict:
    """The preconditioner of draws ``x`` (S, n) and their potential's gradients ``g`` (S, n) (module docstring).

    ``mask`` (n,) bool: the coordinates the low-rank correction may use (default: all); the others keep the
    diagonal only (their rows of U are zero). A coordinate whose posterior is far from Gaussian (a simplex's
    near its edge) is better left out: a direction scaled for the bulk there overshoots in the tail.

    Returns ``{"mu", "d", "U", "s", "s_inv"}`` for :func:`to_x` and :func:`to_u` (``d`` is sqrt D, ``s`` and
    ``s_inv`` hold s - 1 and 1/s - 1 of the kept directions, ``U`` their orthonormal basis; a zero column when
    none is kept, so that every preconditioner of one problem has the same shapes: ``U`` is n x 2 max_rank)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    S, n = x.shape
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"mask must have one entry per coordinate ({n}), got shape {mask.shape}")
        if not mask.all():
            inner = estimate(x[:, mask], g[:, mask], max_rank=max_rank, cutoff=cutoff, dtype=np.float64)
            outer = estimate(x, g, max_rank=0, cutoff=cutoff, dtype=np.float64)  # the diagonal of every coordinate
            U = np.zeros((n, 2 * max_rank))
            U[mask] = inner["U"]
            return {"mu": outer["mu"].astype(dtype), "d": outer["d"].astype(dtype), "U": U.astype(dtype),
                    "s": inner["s"].astype(dtype), "s_inv": inner["s_inv"].astype(dtype)}
    mu = x.mean(axis=0)
    sx, sg = x.std(axis=0), g.std(axis=0)
    ok = (sx > 0) & (sg > 0) & np.isfinite(sx) & np.isfinite(sg)
    D = np.where(ok, sx / np.where(ok, sg, 1.0), np.where(sx > 0, sx**2, 1.0))
    d = np.sqrt(D)
    xs, gs = (x - mu) / d, (g - g.mean(axis=0)) * d
    k = min(max_rank, max(S - 2, 0))
    Q, _ = np.linalg.qr(np.concatenate([_leading(xs, k), _leading(gs, k)], axis=1)) if k else (np.zeros((n, 0)), None)
    U = np.zeros((n, 2 * max_rank))
    s = np.zeros(2 * max_rank)
    s_inv = np.zeros(2 * max_rank)
    if Q.shape[1]:
        m = Q.shape[1]
        A = np.cov(xs @ Q, rowvar=False) * (1 - SHRINK) + SHRINK * np.eye(m)
        B = np.cov(gs @ Q, rowvar=False) * (1 - SHRINK) + SHRINK * np.eye(m)
        Bh, Bih = _sym_sqrt(B), _sym_sqrt(B, -0.5)
        Sig = Bih @ _sym_sqrt(Bh @ A @ Bh) @ Bih
        w, V = np.linalg.eigh((Sig + Sig.T) / 2)
        keep = (w > cutoff) | (w < 1.0 / cutoff)
        r = int(keep.sum())
        U[:, :r] = Q @ V[:, keep]
        s[:r] = np.sqrt(w[keep]) - 1.0
        s_inv[:r] = 1.0 / np.sqrt(w[keep]) - 1.0
    return {"mu": mu.astype(dtype), "d": d.astype(dtype), "U": U.astype(dtype), "s": s.astype(dtype),
            "s_inv": s_inv.astype(dtype)}


def rank(pre: dict) -> int:
    """How many directions the preconditioner corrects beyond the diagonal."""
    return int(np.count_nonzero(np.asarray(pre["s"])))


def as_jax(pre: dict, dtype) -> dict:
    return {k: jnp.asarray(v, dtype=dtype) for k, v in pre.items()}
