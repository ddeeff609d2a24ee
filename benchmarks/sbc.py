"""Simulation-based calibration (SBC) of the skills law (Talts et al. 2018).

For each replication r:

1. draw every parameter from the model's own prior and
2. the scores of a FIXED design (same models, families, covariates,
   benchmarks and observed (model, benchmark) pairs in every replication, so
   one compiled sampler is reused) from those parameters, both through the
   package's simulator (``bayes_sloth.workflows.simulation``, which runs the model
   ``skills_law`` forward),
3. fit the leaderboard with :class:`bayes_sloth.SkillsLaw` (the package's own
   NUTS path, with the true anchor so the scale and sign are the truth's),
4. record the rank of each true scalar parameter among L thinned posterior
   draws (L + 1 possible ranks).

If the sampler and the model code are right, every rank is uniform on
0..L. The script bins the ranks (10 bins by default), prints each parameter's
chi-square statistic and p-value, and a summary per parameter group: how many
p-values fall below 0.05 and 0.01 against the number expected by chance.
Replications with divergences are kept and counted (discarding them would bias
the ranks); the table reports them.

``--wrong-prior`` simulates with tau drawn from HalfNormal(3) and sigma from
a log-normal with three times the model's median (the model says
HalfNormal(1) and LogNormal(log 0.04, 0.5)): a deliberate miscalibration
that SBC must flag.

Usage::

    python benchmarks/sbc.py --reps 200 --out benchmarks/results/sbc.md
    python benchmarks/sbc.py --reps 40 --warmup 200 --draws 200       # a short run
    python benchmarks/sbc.py --quick    # 2 replications, 2 x 20 x 50: checks the script runs, tests nothing
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

import bayes_sloth as bs
from bayes_sloth.core.data import Leaderboard
from bayes_sloth.core.idata import model_arrays
from bayes_sloth.core.io import write_csv
from bayes_sloth.core.model import LINK_KNOTS, SIGMA_LOG_SD, SIGMA_MEDIAN, ModelSpec, Standardizer, auto_coordinates
from bayes_sloth.core.options import AUTO_SCALED_MIN_FAMILIES, LawOptions
from bayes_sloth.core.sampler import auto_target_accept
from bayes_sloth.workflows.simulation import draw_through_model  # the simulator's pass through skills_law

# This module imports nothing from ``harness`` at its top: tests/test_sbc.py loads it by its path, without
# this folder on sys.path. Only main(), the command line, uses the harness.

#: Sites drawn from the prior that define a replication's truth (alpha,
#: loadings are deterministic functions of these).
PRIOR_SITES = ("slopes", "tau", "family_z", "loadings_free", "intercept", "sigma")
#: The same for the parts of the law that only some specs have.
OPTIONAL_SITES = ("model_sd", "model_z", "instruct_shift", "link_weights", "instruct_slope", "family_slope_sd",
                  "family_slope")


#: The laws SBC can check: the lean one (session 3); "default", the package's default law before session 13
#: (learned link, offsets, shift); "slopes", today's default (that law with the family and instruct slopes).
#: Each as the options that differ from today's defaults (bayes_sloth.core.options), so a law here stays the law
#: it names when a default changes.
LAWS = {
    "lean": dict(LawOptions().differences(), link="sigmoid", model_effects=False, instruct_shift=False,
                 instruct_slope=False, family_slopes=False),
    "default": dict(LawOptions().differences(), instruct_slope=False, family_slopes=False),
    "slopes": LawOptions().differences(),
}
LAW_WORDS = {"lean": "sigmoid link, no offsets or shift",
             "default": "learned link, per-model offsets, instruct shift (no slopes: the default before session 13)",
             "slopes": "learned link, per-model offsets, instruct shift and slope, family slopes (the default law "
                       "since session 13)"}


@dataclass
class Design:
    """A fixed leaderboard layout: everything but the scores."""

    covariates: pd.DataFrame
    floors: pd.Series
    observed: np.ndarray  # (N, J) bool: which pairs have a score
    n_skills: int = 1
    law: str = "lean"  # a key of LAWS

    @property
    def benchmarks(self) -> list[str]:
        return list(self.floors.index)

    @property
    def families(self) -> list[str]:
        return list(pd.unique(self.covariates["family"]))

    @property
    def spec(self) -> ModelSpec:
        # anchors: the first K benchmarks, passed to the fit by name
        return ModelSpec(n_skills=self.n_skills, n_benchmarks=len(self.benchmarks),
                         n_families=len(self.families), anchors=tuple(range(self.n_skills)), **LAWS[self.law])

    def arrays(self) -> dict:
        cov = self.covariates
        std = Standardizer.fit(cov["params"], cov["tokens"])  # exactly what SkillsLaw.fit computes
        om, ob = np.nonzero(self.observed)
        return model_arrays(
            x=std.transform(cov["params"], cov["tokens"]),
            family=pd.Index(self.families).get_indexer(cov["family"]),
            instruct=cov["instruct"].to_numpy(dtype=float),
            floor=self.floors.to_numpy(),
            obs_model=om, obs_bench=ob, y=np.zeros(len(om)),
        )

    def leaderboard(self, y: np.ndarray) -> Leaderboard:
        scores = np.full(self.observed.shape, np.nan)
        scores[self.observed] = np.asarray(y, dtype=float)  # row-major order == np.nonzero order
        sc = pd.DataFrame(scores, index=self.covariates.index, columns=self.benchmarks)
        return Leaderboard(self.covariates, sc, self.floors)


def make_design(n_families: int = 8, models_per_family: int = 3, n_benchmarks: int = 4, n_skills: int = 1,
                missing: float = 0.1, seed: int = 123, law: str = "lean") -> Design:
    """Families of equal size from 0.1B to 70B parameters, a family token budget, a few missing pairs.

    With a law that has the instruct shift (``law="default"`` or ``"slopes"``) every family's
    largest model is instruction-tuned, so the shift has something to be
    estimated from; with the lean law, which has no shift, none is."""
    if law not in LAWS:
        raise ValueError(f"law must be one of {sorted(LAWS)}, got {law!r}")
    instruct_largest = LawOptions(**LAWS[law]).instruct_shift
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_families):
        sizes = np.sort(np.exp(rng.uniform(np.log(0.1), np.log(70.0), size=models_per_family)))
        budget = np.exp(rng.uniform(np.log(0.3), np.log(15.0)))
        for i, s in enumerate(sizes):
            rows.append((f"fam{f:02d}-m{i}", f"fam{f:02d}", float(s), float(budget * np.exp(rng.normal(0, 0.15))),
                         instruct_largest and i == models_per_family - 1))
    cov = pd.DataFrame(rows, columns=["model", "family", "params", "tokens", "instruct"]).set_index("model")
    base = [0.25, 0.0, 0.25, 0.1, 0.5, 0.0]
    J = n_benchmarks
    floors = pd.Series([base[j % len(base)] for j in range(J)], index=pd.Index([f"b{j}" for j in range(J)], name="benchmark"),
                       name="floor", dtype=float)
    obs = rng.random((len(cov), J)) >= missing
    obs[:, 0] = True  # the anchor is observed on every model
    return Design(cov, floors, obs, n_skills, law)


def prior_draws(design: Design, n: int, seed: int, wrong_prior: bool = False, first: int = 0) -> dict:
    """Truths of replications ``first .. first + n - 1``: parameters drawn from the model's prior and the
    scores they generate on the design's observed pairs (numpy arrays, leading replication axis).

    Drawn through the package's simulator (:mod:`bayes_sloth.workflows.simulation`), which runs ``skills_law``
    forward, on this fixed design. Replication r uses the key ``fold_in(PRNGKey(seed), r)``: its truth
    depends only on (design, seed, r), so a run split into chunks, or extended, draws the same truths.

    ``wrong_prior``: family spread and misfit three times larger than the model's priors say (tau ~
    HalfNormal(3) instead of HalfNormal(1), sigma's log-normal prior with a median three times the
    model's); the model is conditioned on them and draws everything else from its own prior.
    """
    spec, arrays = design.spec, design.arrays()
    args = {k: arrays[k] for k in ("x", "family", "instruct", "floor", "obs_model", "obs_bench")}
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda r: jax.random.fold_in(base, r))(jnp.arange(first, first + n))
    K, J = spec.n_skills, spec.n_benchmarks
    real = arrays["x"].dtype

    def one(key):
        cond = {}
        if wrong_prior:
            key, ka, kb = jax.random.split(key, 3)
            cond = {"tau": jnp.abs(3.0 * jax.random.normal(ka, (K,), real)),
                    "sigma": jnp.exp(np.log(3.0 * SIGMA_MEDIAN) + SIGMA_LOG_SD * jax.random.normal(kb, (J,), real))}
        return draw_through_model(spec, key, cond, args)

    sites = jax.vmap(one)(keys)
    keep = PRIOR_SITES + OPTIONAL_SITES + ("alpha", "model_effect", "y")
    return {k: np.asarray(v) for k, v in sites.items() if k in keep}


def scalar_params(spec: ModelSpec, n_alpha: int = 3) -> list[tuple[str, str, tuple]]:
    """(group, label, index) of the scalar parameters that are ranked."""
    K, J = spec.n_skills, spec.n_benchmarks
    out = []
    covs = ("logS", "logT", "logSxT")
    for c in range(3):
        for k in range(K):
            out.append(("slopes", f"slopes[{covs[c]},{k}]", (c, k)))
    out += [("tau", f"tau[{k}]", (k,)) for k in range(K)]
    out += [("loadings_free", f"loadings_free[{i}]", (i,)) for i in range(len(spec.free_loading_index))]
    out += [("intercept", f"intercept[{j}]", (j,)) for j in range(J)]
    out += [("sigma", f"sigma[{j}]", (j,)) for j in range(J)]
    out += [("alpha", f"alpha[{f},{k}]", (f, k)) for f in range(min(n_alpha, spec.n_families)) for k in range(K)]
    if spec.instruct_shift:
        out += [("instruct_shift", f"instruct_shift[{k}]", (k,)) for k in range(K)]
    if spec.instruct_slope:
        out += [("instruct_slope", f"instruct_slope[{k}]", (k,)) for k in range(K)]
    if spec.family_slopes:
        out += [("family_slope_sd", f"family_slope_sd[{k}]", (k,)) for k in range(K)]
        out += [("family_slope", f"family_slope[{f},{k}]", (f, k)) for f in range(min(n_alpha, spec.n_families))
                for k in range(K)]
    if spec.model_effects:
        out += [("model_sd", "model_sd", ())]
        out += [("model_effect", f"model_effect[{i}]", (i,)) for i in range(n_alpha)]
    if spec.link == "monotone":
        out += [("link_weights", f"link_weights[{m}]", (m,)) for m in range(len(LINK_KNOTS))]
    return out


@dataclass
class SBCResult:
    ranks: pd.DataFrame  # replications x parameters, ranks in 0..L
    groups: dict  # parameter label -> group
    n_ranks: int  # L + 1
    runs: pd.DataFrame  # per replication: divergences, max_rhat, min_ess, depth hits, seconds
    settings: dict = field(default_factory=dict)

    def table(self, bins: int = 10) -> pd.DataFrame:
        rows = []
        for label in self.ranks.columns:
            r = self.ranks[label].to_numpy()
            counts = np.bincount((r * bins) // self.n_ranks, minlength=bins)
            chi2, p = stats.chisquare(counts)
            rows.append({"group": self.groups[label], "parameter": label, "chi2": chi2, "df": bins - 1, "p": p,
                         "mean_rank": r.mean() / (self.n_ranks - 1), "counts": " ".join(map(str, counts))})
        return pd.DataFrame(rows)

    def summary(self, bins: int = 10) -> pd.DataFrame:
        tab = self.table(bins)
        g = tab.groupby("group", sort=False)
        out = pd.DataFrame({
            "n_params": g.size(),
            "min_p": g["p"].min(),
            "n_p<0.05": g["p"].apply(lambda p: int((p < 0.05).sum())),
            "expected_0.05": g.size() * 0.05,
            "n_p<0.01": g["p"].apply(lambda p: int((p < 0.01).sum())),
            "expected_0.01": g.size() * 0.01,
        })
        # pooled test per group: ranks of all parameters of the group together
        pooled = []
        for name in out.index:
            labels = [lab for lab, grp in self.groups.items() if grp == name]
            r = self.ranks[labels].to_numpy().ravel()
            counts = np.bincount((r * bins) // self.n_ranks, minlength=bins)
            pooled.append(stats.chisquare(counts).pvalue)
        out["pooled_p"] = pooled  # parameters of a group are dependent: indicative only
        return out


RUN_COLUMNS = ("rep", "divergences", "max_rhat", "min_ess_bulk", "tree_depth_hits", "draws_per_chain", "seconds")


def run_sbc(reps: int = 200, *, design: Design | None = None, warmup: int = 300, draws: int = 300, chains: int = 2,
            n_ranks: int = 100, seed: int = 0, wrong_prior: bool = False, verbose: bool = True,
            start: int = 0, stop: int | None = None, rows_out: str | None = None,
            coordinates: str = "auto") -> SBCResult:
    """Run replications ``start..stop`` of ``reps``; ranks among ``n_ranks - 1`` thinned draws.

    The truth of replication r depends only on (design, reps, seed, r), so a
    run split into chunks (``start``/``stop``, e.g. in separate processes) is
    the same run. With ``rows_out`` each replication's row (ranks, then
    sampler diagnostics) is added to that CSV (rewritten atomically) as soon as it is done.
    """
    design = design or make_design()
    spec = design.spec
    stop = reps if stop is None else stop
    truth = prior_draws(design, stop - start, seed, wrong_prior, first=start)
    params = scalar_params(spec)
    L = n_ranks - 1
    if draws != "auto" and chains * draws < L:
        raise ValueError(f"need at least {L} draws in all, got {chains * draws}")
    rows = []
    before = pd.read_csv(rows_out) if rows_out and _nonempty(rows_out) else None  # replications of earlier runs
    t_all = time.perf_counter()
    for r in range(start, stop):
        lb = design.leaderboard(truth["y"][r - start])
        # the fitted law is the simulated one, structure for structure (not the package's defaults)
        law = bs.SkillsLaw(n_skills=spec.n_skills, anchors=design.benchmarks[: spec.n_skills], chains=chains,
                           warmup=warmup, draws=draws, seed=seed * 100003 + r, link=spec.link, noise=spec.noise,
                           instruct_shift=spec.instruct_shift, instruct_slope=spec.instruct_slope,
                           family_slopes=spec.family_slopes, model_effects=spec.model_effects,
                           coordinates=coordinates)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            law.fit(lb)
        post = law.idata_.posterior
        total = post.sizes["chain"] * post.sizes["draw"]  # with draws="auto", however many the fit drew
        keep = np.linspace(0, total - 1, L).round().astype(int)  # evenly thinned
        row = {}
        for group, label, idx in params:
            d = post[group].values.reshape((total,) + post[group].shape[2:])[keep]
            row[label] = int((d[(slice(None),) + idx] < truth[group][r - start][idx]).sum())
        dg = law.diagnostics_
        row.update({"rep": r, "divergences": dg.divergences, "max_rhat": dg.max_rhat,
                    "min_ess_bulk": dg.min_ess_bulk, "tree_depth_hits": dg.max_tree_depth_hits,
                    "draws_per_chain": post.sizes["draw"], "seconds": time.perf_counter() - t0})
        rows.append(row)
        if rows_out:
            # the whole file again, atomically: a run killed mid-write keeps every replication it finished
            write_csv(pd.concat([before, pd.DataFrame(rows)], ignore_index=True), rows_out, index=False)
        if verbose and (r + 1) % 10 == 0:
            print(f"  {r + 1}/{reps} replications, {time.perf_counter() - t_all:.0f} s", file=sys.stderr, flush=True)
    settings = dict(reps=reps, warmup=warmup, draws=draws, chains=chains, L=L, seed=seed, wrong_prior=wrong_prior,
                    n_models=len(design.covariates), n_families=len(design.families),
                    n_benchmarks=len(design.benchmarks), n_skills=spec.n_skills,
                    n_observed=int(design.observed.sum()), law=design.law, seconds=time.perf_counter() - t_all)
    return from_rows(pd.DataFrame(rows), spec, n_ranks, settings)


def _nonempty(path) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0


def from_rows(rows: pd.DataFrame, spec: ModelSpec, n_ranks: int, settings: dict) -> SBCResult:
    params = scalar_params(spec)
    rows = rows.sort_values("rep").reset_index(drop=True)
    ranks = rows[[lab for _, lab, _ in params]].astype(int)
    runs = rows[[c for c in RUN_COLUMNS if c in rows]]  # draws_per_chain: not in files before session 18
    return SBCResult(ranks, {lab: g for g, lab, _ in params}, n_ranks, runs, settings)


def _markdown(df: pd.DataFrame, index: bool = True) -> str:
    """A markdown table without the optional ``tabulate`` dependency."""
    if index:
        df = df.reset_index()

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule] + body)


def report(res: SBCResult, bins: int = 10) -> str:
    s = res.settings
    runs = res.runs
    of_planned = "" if s.get("planned", s["reps"]) == s["reps"] else f" (of {s['planned']} planned)"
    lines = [
        f"# SBC of the skills law ({'WRONG prior in the simulator' if s['wrong_prior'] else 'prior = model prior'})",
        "",
        f"{s['reps']} replications{of_planned}; design {s['n_families']} families, {s['n_models']} models, "
        f"{s['n_benchmarks']} benchmarks, {s['n_observed']} observed pairs, K={s['n_skills']}, "
        f"{s.get('law', 'lean')} law ({LAW_WORDS[s.get('law', 'lean')]}); "
        f"NUTS {s['chains']} chains x {s['warmup']} warmup x {s['draws']} draws, target_accept "
        f"{auto_target_accept(s['n_benchmarks'])} (SkillsLaw's default 'auto'), "
        + (f"{s['coordinates']} coordinates, " if "coordinates" in s else "")
        + f"ranks among L={s['L']} thinned "
        f"draws, {bins} bins (chi-square df={bins - 1}); "
        + (f"rendered from the ranks file, whose replications took {runs['seconds'].sum():.0f} s in all "
           "(their seeds as the file says)." if s.get("rendered") else f"seed {s['seed']}; {s['seconds']:.0f} s."),
        "",
        f"Sampler: {int((runs['divergences'] > 0).sum())} of {len(runs)} replications had divergences "
        f"({int(runs['divergences'].sum())} divergent draws in all, kept); "
        f"{int((runs['tree_depth_hits'] > 0).sum())} hit max tree depth; "
        f"{int((runs['max_rhat'] > 1.01).sum())} had max R-hat > 1.01; median min bulk ESS "
        f"{runs['min_ess_bulk'].median():.0f}"
        + (f"; draws per chain median {runs['draws_per_chain'].median():.0f}, "
           f"range {runs['draws_per_chain'].min()}-{runs['draws_per_chain'].max()}" if "draws_per_chain" in runs else "")
        + ".",
        "",
        *([f"Command: `{s['command']}`", ""] if s.get("command") else []),
        "## Per parameter",
        "",
        _markdown(res.table(bins), index=False),
        "",
        "## Per group (expected counts are under uniform ranks)",
        "",
        _markdown(res.summary(bins)),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    from harness import BenchmarkParser, write_result  # see the note at the imports

    p = BenchmarkParser(__doc__, __file__)
    p.add_argument("--reps", type=int, default=200)
    p.add_sampler(chains=2, warmup=300, draws=300, auto=True)
    p.add_argument("--families", type=int, default=8)
    p.add_argument("--models-per-family", type=int, default=3)
    p.add_argument("--benchmarks", type=int, default=4)
    p.add_argument("--skills", type=int, default=1)
    p.add_argument("--bins", type=int, default=10)
    p.add_seed()
    p.add_argument("--wrong-prior", action="store_true")
    p.add_argument("--coordinates", choices=("auto", "scaled", "anchored"), default="auto",
                   help="the fits' sampler coordinates (default auto, the package's: scaled from "
                        f"{AUTO_SCALED_MIN_FAMILIES} families, anchored below)")
    p.add_argument("--law", choices=sorted(LAWS), default="lean",
                   help="law simulated and fitted: " + "; ".join(f"{k}: {v}" for k, v in LAW_WORDS.items()))
    p.add_argument("--chunk", type=int, default=25,
                   help="replications per worker process (0: all in this process); each fit leaks JIT code "
                        "memory, so long runs are split (default 25)")
    p.add_out(help="also write the report (markdown) here")
    p.add_argument("--ranks-out", help="CSV of per-replication ranks and diagnostics (rewritten atomically after each; "
                                       "replications already in it are not rerun)")
    p.add_argument("--render-only", action="store_true",
                   help="run no replication: report those already in --ranks-out (a run stopped early is reported as "
                        "the replications it finished, of the --reps planned)")
    p.add_quick(reps=2, warmup=20, draws=50, bins=2)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse(argv)
    a.draws = a.draws if a.draws == "auto" else int(a.draws)
    bs.configure()  # one CPU device per core (chains in parallel), compiled programs kept on disk
    design = make_design(a.families, a.models_per_family, a.benchmarks, a.skills, law=a.law)
    kw = dict(design=design, warmup=a.warmup, draws=a.draws, chains=a.chains, seed=a.seed, wrong_prior=a.wrong_prior,
              coordinates=a.coordinates)
    if a.worker:
        run_sbc(a.reps, start=a.start, stop=a.stop, rows_out=a.ranks_out, **kw)
        return 0
    if not a.chunk:
        res = run_sbc(a.reps, rows_out=a.ranks_out, **kw)
    else:
        rows_path = a.ranks_out or os.path.join(tempfile.mkdtemp(prefix="sbc_"), "ranks.csv")
        t0 = time.perf_counter()
        done = set(pd.read_csv(rows_path)["rep"]) if _nonempty(rows_path) else set()
        forwarded = a.argv
        for s in range(0, 0 if a.render_only else a.reps, a.chunk):
            e = min(s + a.chunk, a.reps)
            todo = [r for r in range(s, e) if r not in done]
            if not todo:
                continue
            cmd = [sys.executable, os.path.abspath(__file__), *forwarded, "--worker", "--ranks-out", rows_path,
                   "--start", str(todo[0]), "--stop", str(e)]
            subprocess.run(cmd, check=True)
        rows = pd.read_csv(rows_path).drop_duplicates("rep", keep="last")
        rows = rows[rows["rep"] < a.reps]
        settings = dict(reps=len(rows), planned=a.reps, warmup=a.warmup, draws=a.draws, chains=a.chains, L=99, seed=a.seed,
                        wrong_prior=a.wrong_prior, n_models=len(design.covariates), n_families=len(design.families),
                        n_benchmarks=len(design.benchmarks), n_skills=design.n_skills,
                        n_observed=int(design.observed.sum()), law=design.law, seconds=time.perf_counter() - t0,
                        coordinates=auto_coordinates(len(design.families)) if a.coordinates == "auto" else a.coordinates,
                        rendered=bool(a.render_only), command=a.command)
        res = from_rows(rows, design.spec, 100, settings)
    text = report(res, a.bins)
    print(text)
    if a.out:
        write_result(text, a.out, a.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
