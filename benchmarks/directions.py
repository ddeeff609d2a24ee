"""Which directions of a fitted posterior set NUTS's step size and its trajectories' length.

NUTS needs about as many leapfrog steps per draw as the ratio of the posterior's widest to its narrowest scale,
in the metric of its mass matrix. With the diagonal metric the warm-up learns (each unconstrained coordinate
scaled by its posterior sd), the two ends are:

- **narrowest**: the leading eigenvectors of the covariance of the potential's gradients, each coordinate's
  gradient multiplied by its posterior sd (for a Gaussian that matrix is the inverse of the correlation
  matrix: an eigenvalue v means a direction with sd 1 / sqrt(v) in units of the coordinates' own sds, which
  bounds the step size);
- **widest**: the leading eigenvectors of the correlation matrix of the draws (eigenvalue = variance in the
  same units).

The gradients are computed at ``--draws`` posterior draws spread over the chains, in the sampler's
coordinates (the fit's sampled sites, unconstrained as NumPyro does), so the table describes the geometry the
sampler saw. Also printed: the coordinates with the largest sd(x) * sd(gradient) (1 for a coordinate
independent of the rest; large when it lies in a narrow direction).

    python benchmarks/directions.py FIT.nc [--draws 400] [--top 6] [--out FILE]
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
from harness import BenchmarkParser, Transcript

import bayes_sloth as bs


def _labels(post, unconstrained: dict, free_loadings: list[str]) -> list[str]:
    """One label per flattened unconstrained coordinate, in ``ravel_pytree``'s order (sorted site names):
    the site and its coordinates' labels where the shapes agree, the site and an index otherwise (a simplex
    has one coordinate fewer than its weights)."""
    out = []
    for name in sorted(unconstrained):
        size = int(np.prod(np.shape(unconstrained[name]), dtype=int))
        var = post[name]
        dims = var.dims[2:]
        if dims == ("loading_free",) and size == len(free_loadings):  # (benchmark, skill) of each free loading
            out += [f"{name}[{f}]" for f in free_loadings]
        elif int(np.prod(var.shape[2:], dtype=int)) == size and dims:
            values = [[str(v) for v in var.coords[d].values] if d in var.coords else
                      [str(i) for i in range(var.sizes[d])] for d in dims]
            out += [f"{name}[{', '.join(c)}]" for c in itertools.product(*values)]
        else:
            out += [f"{name}[u{i}]" if size > 1 else name for i in range(size)]
    return out


def main(argv=None) -> int:
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_argument("fit", help="a saved fit (law.save / bayes-sloth fit --out)")
    ap.add_argument("--draws", type=int, default=400, help="posterior draws the gradients are computed at")
    ap.add_argument("--top", type=int, default=6, help="directions shown at each end")
    ap.add_out()
    args = ap.parse(argv)
    warnings.simplefilter("ignore")
    import jax
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import potential_energy, unconstrain_fn

    from bayes_sloth.core.model import skills_law
    from bayes_sloth.core.sites import sampled

    law = bs.SkillsLaw.load(args.fit)
    spec = law.spec_
    _, _, _, _, arrays = law._design(law.leaderboard_)
    post = law.idata_.posterior
    C, S = post.sizes["chain"], post.sizes["draw"]
    names = [n for n in sampled(spec) if n in post]
    flat_draws = {n: post[n].values.reshape((C * S,) + post[n].shape[2:]) for n in names}

    def at(i):
        return unconstrain_fn(skills_law, (spec,), arrays, {n: v[i] for n, v in flat_draws.items()})

    u0 = at(0)
    unravel = ravel_pytree(u0)[1]
    grad = jax.jit(jax.grad(lambda f: potential_energy(skills_law, (spec,), arrays, unravel(f))))
    X, G = [], []
    for i in np.linspace(0, C * S - 1, args.draws).astype(int):
        f = ravel_pytree(at(i))[0]
        X.append(np.asarray(f, dtype=np.float64))
        G.append(np.asarray(grad(f), dtype=np.float64))
    X, G = np.array(X), np.array(G)
    bench, skills = list(law.leaderboard_.benchmarks), [law.leaderboard_.benchmarks[a] for a in spec.anchors]
    free = [f"{bench[i // spec.n_skills]}, {skills[i % spec.n_skills]}" for i in spec.free_loading_index]
    labels = _labels(post, u0, free)
    sx, sg = X.std(axis=0), G.std(axis=0)
    narrow_w, narrow_v = np.linalg.eigh(np.cov((G - G.mean(axis=0)) * sx, rowvar=False))
    wide_w, wide_v = np.linalg.eigh(np.corrcoef(X, rowvar=False))

    def composition(v):
        top = np.argsort(-np.abs(v))[:8]
        return ", ".join(f"{labels[t]} {v[t]:+.2f}" for t in top)

    with Transcript(args.out, args.command) as out:
        d = law.diagnostics_
        st = law.idata_.sample_stats
        out.print(f"# {args.fit}: {spec.n_skills} skills, {X.shape[1]} unconstrained coordinates, gradients at "
                  f"{args.draws} draws; the fit's median leapfrog steps per draw "
                  f"{float(np.median(st['n_steps'].values)):.0f}, mean step size "
                  f"{float(st['step_size'].values.mean()):.4f}, "
                  f"min bulk ESS {d.min_ess_bulk:.0f}\n")
        ratio = np.sqrt(wide_w[-1] * narrow_w[-1])
        out.print(f"Widest sd / narrowest sd in the diagonal metric: sqrt({wide_w[-1]:.1f} x {narrow_w[-1]:.1f}) "
                  f"= {ratio:.0f} (NUTS needs on the order of that many steps to cross the widest direction)\n")
        out.print("| end | eigenvalue | sd (units of the coordinates' sds) | leading coordinates (loading) |")
        out.print("|---|---|---|---|")
        for e in range(1, args.top + 1):
            out.print(f"| narrow {e} | {narrow_w[-e]:.1f} | {1 / np.sqrt(narrow_w[-e]):.3f} | "
                      f"{composition(narrow_v[:, -e])} |")
        for e in range(1, args.top + 1):
            out.print(f"| wide {e} | {wide_w[-e]:.1f} | {np.sqrt(wide_w[-e]):.2f} | {composition(wide_v[:, -e])} |")
        out.print("\nCoordinates in narrow directions (sd(x) * sd(gradient); 1 when independent of the rest):\n")
        out.print("| coordinate | sd(x) sd(g) | posterior sd |")
        out.print("|---|---|---|")
        for k in np.argsort(-(sx * sg))[:12]:
            out.print(f"| {labels[k]} | {sx[k] * sg[k]:.1f} | {sx[k]:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
