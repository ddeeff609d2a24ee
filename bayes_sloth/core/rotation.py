r"""Post-hoc varimax rotation of the skills, draw by draw, aligned across draws.

The fitted loadings are identified by anchor constraints (skill k loads 1 on
its anchor benchmark and 0 on the anchors of earlier skills). That choice is
convenient for sampling but not always for reading: skill 1 soaks up whatever
its anchor shares with everything else. Any orthogonal rotation R (K x K,
R'R = I) leaves the law unchanged::

    lambda_j' theta_i = (R' lambda_j)' (R' theta_i)
    i.e. Lambda -> Lambda R,   Theta -> Theta R     (rows are benchmarks / models)

Varimax (Kaiser 1958) picks, for each posterior draw s, the R^(s) maximising
the variance of the squared loadings within each skill, so that each benchmark
loads on few skills. Varimax is itself defined only up to a permutation and
sign flip of its columns, which would mix skills across draws; so each
rotated draw is then matched to a reference (the varimax rotation of the
posterior mean loadings) by the signed permutation P^(s) that minimises
``|| Lambda^(s) R^(s) P^(s) - Lambda_ref ||_F``. The result is a posterior of
rotated loadings and skills whose columns mean the same thing in every draw.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from .errors import InputError


def varimax(loadings: np.ndarray, *, normalize: bool = False, gamma: float = 1.0, max_iter: int = 200,
            tol: float = 1e-9, n_starts: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Varimax rotation of one loading matrix or a stack of them.

    Maximises, over orthogonal R, the criterion::

        V(R) = sum_k [ sum_j (L R)_{jk}^4 / J - gamma * (sum_j (L R)_{jk}^2 / J)^2 ]

    by the classical SVD iteration
    ``R <- U V'`` with ``U S V' = svd(L' [(LR)^3 - gamma/J (LR) diag(1'(LR)^2)])``.

    Parameters
    ----------
    loadings : array (..., J, K)
        One matrix or a batch of matrices (leading dims are draws).
    normalize : bool
        Kaiser normalisation: rotate rows scaled to unit length, then scale back
        (off by default: the loadings share one logit scale, and the raw
        criterion is the more stable of the two on near-symmetric draws).
    gamma : float
        1 for varimax, 0 for quartimax.
    n_starts : int
        Extra random starting rotations (the iteration can stall on
        symmetric configurations); the best criterion wins.

    Returns
    -------
    rotated : array (..., J, K)
        ``loadings @ R``.
    rotation : array (..., K, K)
        The orthogonal matrices R.
    """
    L = np.asarray(loadings, dtype=float)
    if L.ndim < 2:
        raise InputError(f"varimax needs a (J, K) matrix or a stack of them, got shape {L.shape}")
    J, K = L.shape[-2:]
    batch = L.shape[:-2]
    L = L.reshape((-1, J, K))
    if normalize:
        h = np.sqrt((L**2).sum(axis=-1, keepdims=True))
        h = np.where(h > 0, h, 1.0)
        Ln = L / h
    else:
        Ln = L
    def criterion(R):
        LR2 = (Ln @ R) ** 2
        return ((LR2**2).sum(axis=-2) / J - gamma * (LR2.sum(axis=-2) / J) ** 2).sum(axis=-1)

    D = L.shape[0]
    best_R = np.broadcast_to(np.eye(K), (D, K, K)).copy()
    best = criterion(best_R)
    # the SVD iteration can stall or cycle on symmetric configurations, so it is
    # run from the identity and from a few fixed random rotations; the best R wins
    starts = [np.eye(K)] + [np.linalg.qr(g)[0] for g in np.random.default_rng(0).normal(size=(n_starts, K, K))]
    for start in starts if K > 1 else []:
        R = np.broadcast_to(start, (D, K, K)).copy()
        for _ in range(max_iter):
            LR = Ln @ R
            col = (LR**2).sum(axis=-2, keepdims=True)  # (D, 1, K)
            B = np.swapaxes(Ln, -1, -2) @ (LR**3 - (gamma / J) * LR * col)
            U, _s, Vt = np.linalg.svd(B)
            R_new = U @ Vt
            moved = np.abs(R_new - R).max()
            R = R_new
            v = criterion(R)
            better = v > best
            best_R[better], best[better] = R[better], v[better]
            if moved < tol:
                break
    R = best_R
    rotated = (L @ R).reshape(batch + (J, K))
    return rotated, R.reshape(batch + (K, K))


def _signed_permutations(K: int) -> list[np.ndarray]:
    """All K x K signed permutation matrices (K! 2^K of them)."""
    out = []
    for perm in itertools.permutations(range(K)):
        for signs in itertools.product((1.0, -1.0), repeat=K):
            P = np.zeros((K, K))
            P[list(perm), range(K)] = signs
            out.append(P)
    return out


def align(loadings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Signed permutation matrices P (..., K, K) matching each draw to ``reference``.

    For each matrix ``L`` in ``loadings`` (..., J, K), picks the P among all
    K! 2^K signed permutations that minimises ``||L P - reference||_F``.
    """
    L = np.asarray(loadings, dtype=float)
    J, K = L.shape[-2:]
    if K > 6:
        raise InputError(f"alignment by enumeration supports up to 6 skills, got {K}")
    Ps = np.stack(_signed_permutations(K))  # (M, K, K)
    flat = L.reshape((-1, J, K))
    # ||L P - ref||^2 = ||L||^2 + ||ref||^2 - 2 tr(P' L' ref): maximise the cross term
    cross = np.einsum("djk,jl->dkl", flat, reference)  # L' ref, (D, K, K)
    score = np.einsum("mkl,dkl->dm", Ps, cross)
    best = Ps[np.argmax(score, axis=1)]
    return best.reshape(L.shape[:-2] + (K, K))


def rotate_posterior(posterior, *, normalize: bool = False, n_refine: int = 2) -> xr.Dataset:
    r"""Varimax-rotate every draw of a fit's loadings and skills, aligned across draws.

    For each draw s: ``R_s`` = varimax rotation of ``Lambda_s``; then the signed
    permutation ``P_s`` aligning ``Lambda_s R_s`` to a reference; the full
    rotation is ``Q_s = R_s P_s`` (orthogonal), and::

        loadings_rotated_s = Lambda_s Q_s,     skills_rotated_s = Theta_s Q_s

    so ``skills_rotated_s @ loadings_rotated_s'`` equals ``Theta_s Lambda_s'``
    (the law is unchanged). The reference starts as the varimax rotation of
    the posterior mean loadings and is refined ``n_refine`` times as the mean
    of the aligned draws. Signs are fixed so each reference column has a
    positive sum (more skill, higher scores).

    Parameters
    ----------
    posterior : fitted SkillsLaw, or xarray.Dataset
        A fitted law, or a Dataset with ``loadings`` (chain, draw, benchmark,
        skill) and optionally ``skills`` (chain, draw, model, skill).

    Returns
    -------
    xarray.Dataset with ``loadings`` (chain, draw, benchmark, skill), ``skills``
    (chain, draw, model, skill) if present, and ``rotation`` (chain, draw,
    skill_in, skill); the rotated skills are labelled ``"rotated 1"`` ...,
    ``skill_in`` keeps the fit's (anchor) labels.
    """
    if hasattr(posterior, "loadings_"):  # a fitted SkillsLaw
        posterior = posterior.idata_.posterior.assign(loadings=posterior.loadings_)
    if "loadings" not in posterior:
        raise InputError("rotate_posterior takes a fitted SkillsLaw, or a Dataset with 'loadings'")
    lam = posterior["loadings"].transpose("chain", "draw", "benchmark", "skill")
    L = lam.values
    C, S, J, K = L.shape
    rot, R = varimax(L.reshape(C * S, J, K), normalize=normalize)
    ref, _ = varimax(L.reshape(C * S, J, K).mean(axis=0), normalize=normalize)
    for _ in range(max(1, n_refine) + 1):
        P = align(rot, ref)
        aligned = rot @ P
        new_ref = aligned.mean(axis=0)
        if np.allclose(new_ref, ref):
            break
        ref = new_ref
    flip = np.where(ref.sum(axis=0) < 0, -1.0, 1.0)
    Q = R @ P * flip[None, None, :]
    Lrot = (L.reshape(C * S, J, K) @ Q).reshape(C, S, J, K)
    Q = Q.reshape(C, S, K, K)
    rotated_names = [f"rotated {k + 1}" for k in range(K)]  # no longer the anchors' skills
    out = xr.Dataset(
        {
            "loadings": (("chain", "draw", "benchmark", "skill"), Lrot),
            "rotation": (("chain", "draw", "skill_in", "skill"), Q),
        },
        coords={"chain": lam["chain"].values, "draw": lam["draw"].values,
                "benchmark": lam["benchmark"].values, "skill": rotated_names, "skill_in": lam["skill"].values},
    )
    if "skills" in posterior:
        th = posterior["skills"].transpose("chain", "draw", "model", "skill")
        out["skills"] = (("chain", "draw", "model", "skill"), np.einsum("csnk,cskl->csnl", th.values, Q))
        out = out.assign_coords(model=th["model"].values)
    out.attrs["rotation"] = "varimax" + (" (Kaiser-normalised)" if normalize else "") + ", aligned across draws"
    return out
