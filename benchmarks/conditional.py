"""Conditional forecasts and the next-benchmark choice, measured on the real table held out by model.

Design (fixed before any run; nothing here is tuned on the held-out scores):

- data: the Sloth table shipped with the package (``bs.load_sloth()``); the
  models with parameters, tokens and at least 6 observed benchmarks (175 of
  188: the other 13 have no token count and cannot be fitted or forecast);
- folds: a permutation of those models (``numpy.random.default_rng(seed)``),
  model i of the permutation in fold i mod K (K = ``--folds``, 5); each fold
  is fitted without its models (default law, K = 3 skills, ``--chains`` x
  ``--warmup`` x ``--draws``, seed 0) and its diagnostics reported;
- per held-out model, with O its observed benchmarks (6 or 12):
  * random: a permutation of O keyed by the model's name and the seed; the
    forecast conditioned on its first 1, 2, 3 benchmarks (and, for 2, the
    "cut" variant that only updates the model's own latents, without the
    draw-level weights), evaluated on O minus the first 3, against the
    unconditional forecast of the same pairs;
  * suggested: greedy, ``law.suggest_benchmarks`` picks s1 among O (targets:
    the rest of O), then s2 after observing s1, then s3; evaluated on O minus
    {s1, s2, s3}, against the unconditional forecast of the same pairs;
  * next benchmark: for every b in O, the forecast conditioned on b alone,
    error on O minus b; the suggestion's error (b = s1) against the mean over
    b (the expected error of a uniformly random pick) and the unconditional;
- refit: in each of the first ``--refit-folds`` folds (default 1), 20
  held-out models from distinct families, fitted with the fold's training
  models and their random first 2 scores (other scores masked), same
  sampler; MAE, CRPS and coverage on the same pairs, paired by model against
  the conditional forecast from the fold's fit (CRPS ratio and 90 %
  coverage difference with 90 % bootstrap intervals over models), and wall
  times; ``--refit-only`` stops there (no other scenario is computed);
- the suggestion's estimate against what happened: for every held-out
  model and every b in O, ``suggest_benchmarks``'s expected reduction of
  the summed predictive variance of O minus b (targets and candidates O),
  against the realised reduction of the summed squared error of the
  posterior mean on O minus b when b is observed. For a calibrated
  predictive the two have the same expectation, so their pooled ratio
  should be near 1; the rank correlation within a model says whether the
  order of the candidates is right;
- preposterior check of the suggestion's estimator: on ``--prepost-models``
  models with 12 scores (fold 0), the exact expected reduction of the
  targets' variance from observing b, by conditioning on ``--prepost-sims``
  stratified quantiles of the predictive of y_b, against the linear-Gaussian
  estimate from the joint draws.

Every conditional forecast goes through the public ``SkillsLaw.predict`` /
``suggest_benchmarks`` (except the "cut" variant, a private switch). Fits are
cached in ``--cache`` (netCDF) so an interrupted run resumes.

    python benchmarks/conditional.py --cache /tmp/bayes_sloth_conditional \
        --out benchmarks/results/conditional.md
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from harness import REPO_ROOT, BenchmarkParser, load_table, markdown_table, quick_path, run_fit, write_result
from scipy.stats import spearmanr

import bayes_sloth as bs
from bayes_sloth.core import idata as law_idata
from bayes_sloth.core import model as law_model
from bayes_sloth.core import sampler as law_sampler
from bayes_sloth.core.data import read_new_models
from bayes_sloth.core.io import write_text
from bayes_sloth.workflows.evaluation import crps_from_draws

LEVELS = (0.9, 0.5)
#: Floats of the tables of errors, coverages and widths.
FOUR = "{:.4f}"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def eligible(lb) -> list[str]:
    ok = lb.covariates[["params", "tokens"]].notna().all(axis=1) & (lb.scores.notna().sum(axis=1) >= 6)
    return list(lb.covariates.index[ok])


def folds_of(models: list[str], k: int, seed: int) -> list[list[str]]:
    perm = list(np.random.default_rng(seed).permutation(models))
    return [perm[f::k] for f in range(k)]


def law_args(args) -> dict:
    return dict(n_skills=3, chains=args.chains, warmup=args.warmup, draws=args.draws, seed=0, progress=False)


def code_stamp() -> str:
    """Hash of the law's code as imported by this process: a cached fit made by other code is refitted."""
    h = hashlib.sha256()
    for m in (law_model, law_sampler, law_idata):
        h.update(Path(m.__file__).read_bytes())
    return h.hexdigest()[:16]


STAMP = code_stamp()


def fit_cached(path: Path, lb, args, obs_weight=None):
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("stamp") == STAMP and meta.get("sampler") == [args.chains, args.warmup, args.draws]:
            return bs.SkillsLaw.load(path), meta["wall"]
        say(f"{path.name}: made by other code or sampler settings: refitting")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law, numbers = run_fit(lb, obs_weight=obs_weight, **law_args(args))
    wall = numbers.wall_s
    law.save(path)
    write_text(json.dumps({"wall": wall, "stamp": STAMP, "sampler": [args.chains, args.warmup, args.draws]}), meta_path)
    return law, wall


def refit_design(lb, fold0: list[str], n: int = 20):
    """The first n models of fold 0 (in its order) from distinct families."""
    seen, out = set(), []
    for m in fold0:
        f = lb.covariates.loc[m, "family"]
        if f not in seen:
            seen.add(f)
            out.append(m)
        if len(out) == n:
            break
    return out


def order_of(model: str, observed: list[str], seed: int) -> list[str]:
    rng = np.random.default_rng([seed, zlib.crc32(model.encode())])
    return [observed[i] for i in rng.permutation(len(observed))]


def refit_mask(lb, models, keep: dict) -> np.ndarray:
    long = lb.long()
    drop = long["model"].isin(models) & ~np.array([b in keep.get(m, ()) for m, b in zip(long["model"], long["benchmark"])])
    return ~drop.to_numpy()


def do_fits(args, lb, folds):
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    fits = []
    for f, held in enumerate(folds[: args.refit_folds] if args.refit_only else folds):  # --refit-only: the refits' folds
        train = lb.select(models=[m for m in eligible(lb) if m not in set(held)])
        say(f"fold {f}: fitting {len(train)} models ({len(held)} held out)")
        law, wall = fit_cached(cache / f"fold{f}.nc", train, args)
        d = law.diagnostics_
        say(f"fold {f}: {wall:.0f} s, max R-hat {d.max_rhat:.4f}, min bulk ESS {d.min_ess_bulk:.0f}, "
            f"divergences {d.divergences}, ok {d.ok}")
        fits.append((law, wall))
    refits = []
    for f in range(min(args.refit_folds, len(folds))):
        chosen = refit_design(lb, folds[f], args.refit_models)
        keep = {m: order_of(m, list(lb.scores.columns[lb.scores.loc[m].notna()]), args.seed)[:2] for m in chosen}
        models = [m for m in eligible(lb) if m not in set(folds[f])] + chosen
        sub = lb.select(models=models)
        say(f"refit of fold {f}: {len(sub)} models, {len(chosen)} of them with 2 scores")
        refit, wall = fit_cached(cache / f"refit{f}.nc", sub, args, obs_weight=refit_mask(sub, chosen, keep))
        refits.append((f, refit, wall, chosen, keep))
    return fits, refits


def git_state() -> str:
    root = REPO_ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "bayes_sloth"], cwd=root, capture_output=True,
                               text=True).stdout.split()
    except OSError:
        return "unknown"
    changed = [d for d in dirty if d.endswith(".py")]
    return f"commit {head}" + (f" with uncommitted changes in {', '.join(changed)}" if changed else "")


def main(argv=None) -> int:
    p = BenchmarkParser(__doc__, __file__)
    p.add_data_dir()
    p.add_argument("--folds", type=int, default=5)
    p.add_sampler(chains=4, warmup=500, draws=500)
    p.add_seed()
    p.add_argument("--refit-models", type=int, default=20)
    p.add_argument("--refit-folds", type=int, default=1, help="refit in the first N folds (default 1)")
    p.add_argument("--refit-only", action="store_true",
                   help="after the fits, only the conditional forecasts against the refits")
    p.add_argument("--n-latent", type=int, default=None,
                   help="inner latent draws of the refit comparison's conditioning (default: the package's N_LATENT)")
    p.add_argument("--prepost-models", type=int, default=4)
    p.add_argument("--prepost-sims", type=int, default=12)
    p.add_argument("--cache", default=None,
                   help="folder of the fits (netCDF), so an interrupted run resumes (required)")
    p.add_argument("--fits-only", action="store_true")
    p.add_argument("--held-out", type=int, default=0, metavar="N",
                   help="evaluate only the first N held-out models of each fold (0, the default: all); the fits "
                        "still leave the whole fold out. A fold's order is a random permutation fixed by --seed, so "
                        "this is a smaller random sample of the held-out models, fixed before the run")
    p.add_out(default="benchmarks/results/conditional.md", help="the report, written atomically")
    p.add_quick(folds=2, chains=2, warmup=20, draws=20, refit_models=2, prepost_models=1, prepost_sims=2,
                held_out=4, cache=quick_path("conditional_cache"), out=quick_path("conditional.md"))
    args = p.parse(argv)
    if not args.cache:
        p.error("--cache is required (a folder for the fits)")
    args.commit = git_state()
    bs.configure()
    lb = load_table(args.data_dir)
    folds = folds_of(eligible(lb), args.folds, args.seed)
    fits, refits = do_fits(args, lb, folds)
    if args.fits_only:
        return 0
    if args.held_out:
        folds = [held[: args.held_out] for held in folds]
    return evaluate(args, lb, folds, fits, refits)


# ------------------------------------------------------------------ evaluation
def observed_of(lb, m, benchmarks) -> list[str]:
    return [b for b in benchmarks if np.isfinite(lb.scores.loc[m, b])]


def batches(items, lb):
    """Items (model, observed) split into calls whose rows are of distinct families (each is its own group)."""
    out = []
    for it in items:
        fam = lb.covariates.loc[it[0], "family"]
        for batch in out:
            if fam not in batch[1]:
                batch[0].append(it)
                batch[1].add(fam)
                break
        else:
            out.append(([it], {fam}))
    return [b[0] for b in out]


def frame(lb, items, benchmarks):
    rows = lb.covariates.loc[[m for m, _ in items]].reset_index()
    for b in benchmarks:
        rows[b] = [lb.scores.loc[m, b] if b in obs else np.nan for m, obs in items]
    return rows


def draws_of(law, lb, items, condition=True, draw_weights=True, seed=None, **private):
    """{(model, tuple(observed)): (score draws (D, J), diagnostics)} for every item, in family-distinct calls.

    ``draw_weights=False`` and ``private`` (``n_latent``, ``proposal``) go through the estimator's private switch."""
    out = {}
    for batch in batches(items, lb):
        df = frame(lb, batch, law.benchmarks_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if draw_weights and not private:
                pred = law.predict(df, condition=condition, new_families="allow", seed=seed).predictions
            else:
                new = read_new_models(df, law.benchmarks_)
                pred = law._predict_leaderboard(new, seed, "allow", True, draw_weights=draw_weights,
                                                **private).predictions
        s = pred["score"].transpose("chain", "draw", "model", "benchmark").values
        s = s.reshape((-1,) + s.shape[2:])
        names = [str(v) for v in pred["model"].values]
        for m, obs in batch:
            i = names.index(m)
            diag = {k: float(pred[k].values[i]) for k in ("pareto_k", "importance_ess", "inner_ess") if k in pred.coords}
            diag["seen_family"] = bool(pred["seen_family"].values[i])
            out[(m, tuple(obs))] = (s[:, i, :], diag)
    return out


def pair_metrics(draws, truth, cols) -> pd.DataFrame:
    d = draws[:, cols]
    mean = d.mean(axis=0)
    rows = {"abs_err": np.abs(mean - truth), "crps": crps_from_draws(d.T, truth)}
    for lv in LEVELS:
        lo, hi = np.quantile(d, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
        rows[f"in{int(lv * 100)}"] = (truth >= lo) & (truth <= hi)
        rows[f"width{int(lv * 100)}"] = hi - lo
    return pd.DataFrame(rows)


def summarise(pairs: pd.DataFrame, by: str, base: str = "none") -> pd.DataFrame:
    g = pairs.groupby(by, sort=False)
    tab = pd.DataFrame({"pairs": g.size(), "models": g["model"].nunique(), "MAE": g["abs_err"].mean(),
                        "CRPS": g["crps"].mean(), "cov90": g["in90"].mean(), "cov50": g["in50"].mean(), "width90": g["width90"].mean()})
    if base in tab.index:
        tab.insert(3, "MAE vs none", tab["MAE"] / tab.loc[base, "MAE"] - 1)
    return tab


def model_se(pairs: pd.DataFrame, scen: str, base: str = "none") -> tuple[float, float]:
    """Relative MAE change of ``scen`` against ``base`` with a standard error from a bootstrap over models."""
    per = pairs.pivot_table(index="model", columns="scenario", values="abs_err", aggfunc="sum")
    n = pairs.pivot_table(index="model", columns="scenario", values="abs_err", aggfunc="count")
    rng = np.random.default_rng(0)
    idx = np.arange(len(per))
    boots = []
    for _ in range(2000):
        i = rng.choice(idx, len(idx))
        boots.append(per[scen].values[i].sum() / per[base].values[i].sum() - 1)
    return float(per[scen].sum() / per[base].sum() - 1), float(np.std(boots))


def evaluate(args, lb, folds, fits, refits) -> int:
    t_all = time.perf_counter()
    ref = refit_compare(args, lb, fits, refits)
    if args.refit_only:
        text = render(args, lb, folds, fits, ref, None, time.perf_counter() - t_all)
        write_result(text, args.out)  # its command is in its first lines
        say(f"wrote {args.out}")
        return 0
    truth = lb.scores
    rand_pairs, sugg_pairs, next_rows, diags, gain_rows = [], [], [], [], []
    cond_seconds = {}
    for f, (held, (law, wall)) in enumerate(zip(folds, fits)):
        t0 = time.perf_counter()
        fam_fit = set(law.families_)
        obs = {m: observed_of(lb, m, law.benchmarks_) for m in held}
        perm = {m: order_of(m, obs[m], args.seed) for m in held}
        base = draws_of(law, lb, [(m, []) for m in held], condition=False)
        singles = draws_of(law, lb, [(m, [b]) for m in held for b in obs[m]])
        more = draws_of(law, lb, [(m, perm[m][:k]) for m in held for k in (2, 3)])
        cut = draws_of(law, lb, [(m, perm[m][:2]) for m in held], draw_weights=False)
        # greedy suggestions: s1 among O (targets O), then s2 given s1, s3 given s1, s2
        picks = {m: [] for m in held}
        sugg = {}
        for step in range(3):
            groups = {}
            for m in held:
                groups.setdefault(tuple(obs[m]), []).append(m)
            for oset, ms in groups.items():
                for batch in batches([(m, picks[m]) for m in ms], lb):
                    df = frame(lb, batch, law.benchmarks_)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        tab = law.suggest_benchmarks(df, targets=list(oset), candidates=list(oset),
                                                     k=None if step == 0 else 1, new_families="allow")
                    if step == 0:  # every candidate's expected reduction, for the estimate against what happened
                        for m, b, v in zip(tab["model"], tab["benchmark"], tab["variance_reduction"]):
                            gain_rows.append({"model": m, "fold": f, "benchmark": b, "expected": float(v)})
                        tab = tab[tab["rank"] == 1]
                    for m, b in zip(tab["model"], tab["benchmark"]):
                        picks[m].append(b)
            todo = [(m, picks[m][:step + 1]) for m in held]
            sugg.update(singles if step == 0 else draws_of(law, lb, todo))
        cond_seconds[f] = time.perf_counter() - t0
        realised = {}
        for m in held:
            y = truth.loc[m].to_numpy()
            col = {b: j for j, b in enumerate(law.benchmarks_)}
            rest = [b for b in obs[m] if b not in perm[m][:3]]
            cols = [col[b] for b in rest]
            seen = lb.covariates.loc[m, "family"] in fam_fit
            for scen, key, src in (("none", (m, ()), base), ("random 1", (m, tuple(perm[m][:1])), singles),
                                   ("random 2", (m, tuple(perm[m][:2])), more),
                                   ("random 3", (m, tuple(perm[m][:3])), more),
                                   ("random 2, cut", (m, tuple(perm[m][:2])), cut)):
                pm = pair_metrics(src[key][0], y[cols], cols)
                pm["scenario"], pm["model"], pm["benchmark"], pm["seen"], pm["fold"] = scen, m, rest, seen, f
                rand_pairs.append(pm)
                if scen != "none":
                    diags.append(dict(src[key][1], scenario=scen, model=m, fold=f))
            srest = [b for b in obs[m] if b not in picks[m][:3]]
            scols = [col[b] for b in srest]
            for scen, key, src in (("none", (m, ()), base), ("suggested 1", (m, tuple(picks[m][:1])), singles),
                                   ("suggested 2", (m, tuple(picks[m][:2])), sugg),
                                   ("suggested 3", (m, tuple(picks[m][:3])), sugg)):
                pm = pair_metrics(src[key][0], y[scols], scols)
                pm["scenario"], pm["model"], pm["benchmark"], pm["seen"], pm["fold"] = scen, m, srest, seen, f
                sugg_pairs.append(pm)
            errs = {}
            for b in obs[m]:
                others = [col[c] for c in obs[m] if c != b]
                after = pair_metrics(singles[(m, (b,))][0], y[others], others)["abs_err"].to_numpy()
                before = pair_metrics(base[(m, ())][0], y[others], others)["abs_err"].to_numpy()
                errs[b] = float(after.mean())
                realised[(m, b)] = float(np.sum(before**2 - after**2))
                diags.append(dict(singles[(m, (b,))][1], scenario="single", model=m, fold=f))
            s1 = picks[m][0]
            others = [col[c] for c in obs[m] if c != s1]
            none_s1 = float(pair_metrics(base[(m, ())][0], y[others], others)["abs_err"].mean())
            next_rows.append({"model": m, "fold": f, "n_observed": len(obs[m]), "pick": s1, "err_suggested": errs[s1],
                              "err_random": float(np.mean(list(errs.values()))),
                              "err_best": float(min(errs.values())), "err_none": none_s1,
                              "rank_of_pick": int(sorted(errs.values()).index(errs[s1]) + 1)})
        for row in gain_rows:
            if row["fold"] == f:
                row["realised"] = realised[(row["model"], row["benchmark"])]
        say(f"fold {f}: conditional forecasts and suggestions in {cond_seconds[f]:.0f} s")
    rand = pd.concat(rand_pairs, ignore_index=True)
    sug = pd.concat(sugg_pairs, ignore_index=True)
    nxt = pd.DataFrame(next_rows)
    dg = pd.DataFrame(diags)
    gains = pd.DataFrame(gain_rows)
    prop = proposal_check(args, lb, folds, fits)
    pre = prepost_check(args, lb, folds, fits)
    rest = (rand, sug, nxt, gains, dg, pre, prop, cond_seconds)
    text = render(args, lb, folds, fits, ref, rest, time.perf_counter() - t_all)
    write_result(text, args.out)  # its command is in its first lines
    say(f"wrote {args.out}")
    return 0


def proposal_check(args, lb, folds, fits) -> pd.DataFrame:
    law, _ = fits[0]
    held = folds[0]
    col = {b: j for j, b in enumerate(law.benchmarks_)}
    rows = []
    for name, kw in (("laplace-t, M=64 (default)", {}), ("laplace-t, M=16", dict(n_latent=16, proposal="laplace")),
                     ("prior, M=64", dict(n_latent=64, proposal="prior")),
                     ("prior, M=1024", dict(n_latent=1024, proposal="prior"))):
        items = []
        for m in held:
            obs = observed_of(lb, m, law.benchmarks_)
            items.append((m, order_of(m, obs, args.seed)[:2]))
        draws_of(law, lb, items[:1], **kw)  # compile first: the time below is per group, warm
        t0 = time.perf_counter()
        got = draws_of(law, lb, items, **kw)
        secs = (time.perf_counter() - t0) / len(items)
        err, in90, inner, k = [], [], [], []
        for m, picked in items:
            obs = observed_of(lb, m, law.benchmarks_)
            rest = [col[b] for b in obs if b not in order_of(m, obs, args.seed)[:3]]
            d, diag = got[(m, tuple(picked))]
            pm = pair_metrics(d, lb.scores.loc[m].to_numpy()[rest], rest)
            err += list(pm["abs_err"])
            in90 += list(pm["in90"])
            inner.append(diag["inner_ess"])
            k.append(diag["pareto_k"])
        inner, k = np.asarray(inner), np.asarray(k)
        rows.append({"proposal": name, "groups": len(items), "inner ESS median": float(np.median(inner)),
                     "inner ESS 5 %": float(np.quantile(inner, 0.05)), "k median": float(np.median(k)),
                     "k > 0.7": int((k > 0.7).sum()), "MAE": float(np.mean(err)), "cov90": float(np.mean(in90))})
    return pd.DataFrame(rows)


def refit_compare(args, lb, fits, refits):
    """Pairs of the fold fit (unconditional and conditioned on 2 scores) and of the refit, for each refitted fold.

    Returns (pairs, per-fold rows: times and the refit's diagnostics)."""
    rows, folds_rows = [], []
    for f, refit_law, refit_wall, chosen, keep in refits:
        law, _ = fits[f]
        col = {b: j for j, b in enumerate(law.benchmarks_)}
        items = [(m, keep[m]) for m in chosen]
        latent = {} if args.n_latent is None else dict(n_latent=args.n_latent)
        t0 = time.perf_counter()
        draws_of(law, lb, items, **latent)  # the first call compiles each group layout it meets (or reads it)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        cond = draws_of(law, lb, items, **latent)  # the same call again, warm: the time the bar is about
        t_cond = time.perf_counter() - t0
        base = draws_of(law, lb, [(m, []) for m in chosen], condition=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pr = refit_law.predict(lb.covariates.loc[chosen].reset_index(), condition=False).predictions
        rs = pr["score"].transpose("chain", "draw", "model", "benchmark").values
        rs = rs.reshape((-1,) + rs.shape[2:])
        for i, m in enumerate(chosen):
            obs = observed_of(lb, m, law.benchmarks_)
            rest = [b for b in obs if b not in order_of(m, obs, args.seed)[:3]]
            cols = [col[b] for b in rest]
            y = lb.scores.loc[m].to_numpy()[cols]
            for scen, d in (("none (fold fit)", base[(m, ())][0]),
                            ("conditional, 2 scores", cond[(m, tuple(keep[m]))][0]),
                            ("refit with 2 scores", rs[:, i, :])):
                pm = pair_metrics(d, y, cols)
                pm["scenario"], pm["model"], pm["fold"] = scen, m, f
                rows.append(pm)
        d = refit_law.diagnostics_
        fitted_families = set(law.leaderboard_.covariates["family"])
        folds_rows.append({"fold": f, "models": len(chosen), "unseen families": sum(
                               lb.covariates.loc[m, "family"] not in fitted_families for m in chosen),
                           "first call s": t_first, "conditional s": t_cond, "refit s": refit_wall,
                           "time ratio": t_cond / refit_wall, "refit max R-hat": d.max_rhat,
                           "refit min bulk ESS": d.min_ess_bulk, "refit min tail ESS": d.min_ess_tail,
                           "refit divergences": d.divergences, "refit passes checks": d.ok})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(folds_rows)


def ratio_interval(num: np.ndarray, den: np.ndarray, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """sum(num) / sum(den) over models (one entry each), with a 90 % percentile bootstrap interval over models."""
    w = np.random.default_rng(seed).multinomial(len(num), np.full(len(num), 1 / len(num)), size=n_boot)
    lo, hi = np.quantile((w @ num) / (w @ den), [0.05, 0.95])
    return float(num.sum() / den.sum()), float(lo), float(hi)


def paired_by_model(pairs: pd.DataFrame, a: str, b: str) -> dict:
    """Scenario a against b on the same pairs, resampling models: CRPS ratio a / b, MAE ratio and 90 % coverage
    difference a - b, each with a 90 % percentile bootstrap interval over models."""
    sums = pairs.pivot_table(index="model", columns="scenario", values=["crps", "abs_err", "in90"], aggfunc="sum")
    n = pairs[pairs["scenario"] == a].groupby("model").size().reindex(sums.index).to_numpy(float)

    def col(value, scenario):
        return sums[(value, scenario)].to_numpy(float)

    return {"CRPS ratio": ratio_interval(col("crps", a), col("crps", b)),
            "MAE ratio": ratio_interval(col("abs_err", a), col("abs_err", b)),
            "cov90 difference": ratio_interval(col("in90", a) - col("in90", b), n)}


def prepost_check(args, lb, folds, fits):
    """Linear-Gaussian variance reduction vs the exact preposterior one, by conditioning on quantiles of y_b."""
    law, _ = fits[0]
    full = [m for m in folds[0] if len(observed_of(lb, m, law.benchmarks_)) == 12][: args.prepost_models]
    rows = []
    t0 = time.perf_counter()
    n = args.prepost_sims
    for m in full:
        oset = law.benchmarks_
        df = frame(lb, [(m, [])], oset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lin = law.suggest_benchmarks(df, targets=oset, candidates=oset, k=None,
                                         new_families="allow").set_index("benchmark")
            base = law.predict(df, condition=False, new_families="allow").predictions["score"].isel(model=0)
        bd = base.transpose("chain", "draw", "benchmark").values.reshape(-1, len(oset))
        for j, b in enumerate(oset):
            tcols = [i for i in range(len(oset)) if i != j]
            total = bd[:, tcols].var(axis=0, ddof=1).sum()
            qs = np.quantile(bd[:, j], (np.arange(n) + 0.5) / n)
            post = []
            for k, v in enumerate(qs):
                row = df.copy()
                row[b] = float(np.clip(v, 0.0, 1.0))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = law.predict(row, new_families="allow").predictions["score"].isel(model=0)
                sd = s.transpose("chain", "draw", "benchmark").values.reshape(-1, len(oset))
                post.append(sd[:, tcols].var(axis=0, ddof=1).sum())
            rows.append({"model": m, "benchmark": b, "linear": float(lin.loc[b, "variance_reduction"]),
                         "exact": float(total - np.mean(post)), "target_variance": float(total)})
    return pd.DataFrame(rows), time.perf_counter() - t0


def residual_table(fits) -> pd.DataFrame:
    rows = []
    for f, (law, _) in enumerate(fits):
        idata = law.idata_
        y = idata.observed_data["y"].values
        rep = idata.posterior_predictive["y"].mean(("chain", "draw")).values
        res = pd.DataFrame({"model": idata.observed_data["obs_model"].values,
                            "benchmark": idata.observed_data["obs_benchmark"].values, "r": y - rep})
        full = res.pivot(index="model", columns="benchmark", values="r").reindex(columns=law.benchmarks_)
        full = full.dropna().to_numpy()
        C = np.corrcoef(full.T)
        off = C[~np.eye(len(C), dtype=bool)]
        i, j = np.unravel_index(np.argmax(np.where(np.eye(len(C), dtype=bool), -np.inf, C)), C.shape)
        rows.append({"fold": f, "fitted pairs": int(len(y)), "in-sample MAE": float(np.mean(np.abs(y - rep))),
                     "models with 12": int(len(full)), "mean abs corr": float(np.mean(np.abs(off))),
                     "mean corr": float(np.mean(off)),
                     "largest corr": f"{law.benchmarks_[i]} / {law.benchmarks_[j]} {C[i, j]:.2f}"})
    return pd.DataFrame(rows)


def gain_table(gains: pd.DataFrame) -> pd.DataFrame:
    """Pooled realised / expected reduction (90 % bootstrap interval over models) and the mean rank correlation
    of the two across a model's candidates."""
    per = gains.groupby("model")[["expected", "realised"]].sum()
    ratio, lo, hi = ratio_interval(per["realised"].to_numpy(), per["expected"].to_numpy())
    rho = [spearmanr(g["expected"], g["realised"])[0] for _, g in gains.groupby("model") if len(g) >= 3]
    rho = np.array([r for r in rho if np.isfinite(r)])
    return pd.DataFrame([{"models": len(per), "candidates": len(gains), "expected (sum)": per["expected"].sum(),
                          "realised (sum)": per["realised"].sum(), "realised / expected": ratio,
                          "90 % interval low": lo, "90 % interval high": hi,
                          "mean spearman within model": rho.mean(), "se": rho.std(ddof=1) / np.sqrt(len(rho)),
                          "share of models with spearman > 0": float((rho > 0).mean())}])


def render(args, lb, folds, fits, ref, rest, seconds) -> str:
    """The report: the fits and the refits, and (``rest``, None with ``--refit-only``) every other scenario."""
    cmd = ("python benchmarks/conditional.py --cache " + args.cache + f" --folds {args.folds} --chains {args.chains} "
           f"--warmup {args.warmup} --draws {args.draws} --seed {args.seed} --refit-models {args.refit_models} "
           f"--refit-folds {args.refit_folds} --prepost-models {args.prepost_models} "
           f"--prepost-sims {args.prepost_sims} --out {args.out}"
           + (f" --held-out {args.held_out}" if args.held_out else "") + (" --refit-only" if args.refit_only else "")
           + (f" --n-latent {args.n_latent}" if args.n_latent is not None else ""))
    L = ["# Conditional forecasts, the next benchmark, and a refit (real table, held out by model)", "",
         f"Command: `{cmd}` ({os.cpu_count()} CPU cores; evaluation {seconds:.0f} s after the fits). "
         f"Code: {args.commit}.", "",
         "Design" + __doc__.split("Every conditional")[0].split("Design", 1)[1].rstrip(), ""]
    cond_seconds = rest[-1] if rest else {}
    fit_rows = []
    for f, (held, (law, wall)) in enumerate(zip(folds, fits)):
        d = law.diagnostics_
        fit_rows.append({"fold": f, "fitted models": len(law.leaderboard_), "held out": len(held),
                         "held out of unseen families": int(sum(lb.covariates.loc[m, "family"] not in set(law.families_) for m in held)),
                         "fit s": wall, "max R-hat": d.max_rhat, "min bulk ESS": d.min_ess_bulk,
                         "min tail ESS": d.min_ess_tail, "divergences": d.divergences, "passes checks": d.ok,
                         "conditioning s": cond_seconds.get(f, np.nan)})
    L += ["## Fits", "", markdown_table(pd.DataFrame(fit_rows), missing="-"), ""]
    for f, (law, _) in enumerate(fits):
        if not law.diagnostics_.ok:
            L.append(f"- fold {f} fails its checks: " + "; ".join(law.diagnostics_.problems[:3]))
    rp, per_fold = ref
    cond, refit = "conditional, 2 scores", "refit with 2 scores"
    pairs = paired_by_model(rp, cond, refit)
    L += ["", f"## Refit-free conditioning against a refit ({rp['model'].nunique()} held-out models: up to "
          f"{args.refit_models} of distinct families in each of folds 0-{len(per_fold) - 1}, 2 random scores each)", "",
          markdown_table(summarise(rp, "scenario", base="none (fold fit)").reset_index(), FOUR), "",
          "Per refitted fold: the conditional forecast of its models in one call, first (compiling each group "
          "layout, or reading it from the disk cache) and again (warm: the time compared), the refit's "
          "whole fit, and the refit's checks:", "", markdown_table(per_fold, FOUR), "",
          "Conditional against refit, paired by model (90 % bootstrap interval over models; #26's bars: CRPS within "
          "2 %, 90 % coverage within 0.02, under 1 % of the refit's time):", "",
          markdown_table(pd.DataFrame([{"measure": k, "conditional vs refit": v[0], "90 % interval low": v[1],
                                        "90 % interval high": v[2]} for k, v in pairs.items()]), FOUR), "",
          f"Time: {per_fold['conditional s'].sum():.1f} s of conditioning against {per_fold['refit s'].sum():.0f} s "
          f"of refits ({per_fold['conditional s'].sum() / per_fold['refit s'].sum():.2%}).", ""]
    if rest is None:
        return "\n".join(L) + "\n"
    rand, sug, nxt, gains, dg, pre, prop, _ = rest
    L += ["## Conditioning on 1, 2, 3 random observed scores (the rest: O minus the first 3 of the model's random order)", ""]
    tab = summarise(rand, "scenario").reset_index()
    L += [markdown_table(tab, FOUR), ""]
    rel2, se2 = model_se(rand, "random 2")
    L += [f"MAE change with 2 random scores: {rel2:+.1%} (bootstrap over models: se {se2:.1%}). "
          f"90 % coverage {tab.set_index('scenario').loc['random 2', 'cov90']:.3f}; target 0.85-0.95.", ""]
    for seen, name in ((True, "family in the fold's fit"), (False, "family not in the fold's fit")):
        sub = rand[rand["seen"] == seen]
        if len(sub):
            L += [f"By family, {name}:", "", markdown_table(summarise(sub, "scenario").reset_index(), FOUR), ""]
    L += ["## Conditioning on the benchmarks suggest_benchmarks picks (greedy; the rest: O minus the 3 picks)", "",
          markdown_table(summarise(sug, "scenario").reset_index(), FOUR), ""]
    d = nxt["err_random"] - nxt["err_suggested"]
    L += ["## The first benchmark to run: suggestion against a random pick", "",
          "Per model: MAE on the rest of O after observing the suggested benchmark, against the mean of that error "
          "over every benchmark of O (the expected error of a uniformly random pick), and the best pick in hindsight.", "",
          markdown_table(pd.DataFrame([{"models": int(len(nxt)), "suggested": nxt["err_suggested"].mean(),
                                        "random (expected)": nxt["err_random"].mean(),
                                        "best in hindsight": nxt["err_best"].mean(), "none": nxt["err_none"].mean(),
                                        "random - suggested": d.mean(), "se": d.std(ddof=1) / np.sqrt(len(d)),
                                        "share suggested better": float((d > 0).mean()),
                                        "mean rank of the pick": nxt["rank_of_pick"].mean()}]), FOUR), "",
          "Picks: " + ", ".join(f"{b} {n}" for b, n in nxt["pick"].value_counts().items()), ""]
    L += ["## The suggestion's expected variance reduction against the realised reduction of squared error", "",
          "Every (held-out model, b in O): expected, ``suggest_benchmarks``'s reduction of the summed predictive "
          "variance of O minus b from observing b; realised, the summed squared error of the posterior mean on O minus "
          "b before minus after conditioning on b. A calibrated predictive makes the pooled ratio 1 in expectation.", "",
          markdown_table(gain_table(gains), FOUR), ""]
    L += ["## What is left to explain: the fits' own residuals", "",
          "In-sample: each fold fit's posterior predictive mean of its fitted scores against those scores (the error "
          "left if a model's latents were known as well as the fit knows its own models'), and the correlation "
          "across benchmarks of these residuals (models with 12 scores; the law treats them as independent).", "",
          markdown_table(residual_table(fits)), ""]
    L += ["## The inner proposal: Laplace-centred t against the latents' prior (fold 0, 2 random scores)", "",
          "Inner ESS: effective share of the M latent draws per posterior draw (median and 5 % quantile over draws "
          "and groups, as the mean per group); k: Pareto k of the draw-level weights.", "",
          markdown_table(prop), ""]
    pt, pt_s = pre
    if len(pt):
        per = []
        for m, g in pt.groupby("model", sort=False):
            per.append({"model": m, "spearman": spearmanr(g["linear"], g["exact"])[0],
                        "top-1 agrees": g["linear"].idxmax() == g["exact"].idxmax(),
                        "linear / exact (median)": float(np.median(g["linear"] / g["exact"]))})
        L += ["## The suggestion's estimator against the exact preposterior reduction", "",
              f"{pt['model'].nunique()} fold-0 models with 12 scores, every benchmark as candidate (targets: the other 11); "
              f"exact: conditioning on {args.prepost_sims} stratified quantiles of y_b's predictive ({pt_s:.0f} s).", "",
              markdown_table(pd.DataFrame(per), FOUR), ""]
    if len(dg):
        g = dg.groupby("scenario")
        tr = pd.DataFrame({"groups": g.size(), "k median": g["pareto_k"].median(), "k 95 %": g["pareto_k"].quantile(0.95),
                           "k > 0.7": g["pareto_k"].apply(lambda k: int((k > 0.7).sum())),
                           "ESS median": g["importance_ess"].median(), "ESS 5 %": g["importance_ess"].quantile(0.05),
                           "inner ESS median": g["inner_ess"].median(), "inner ESS 5 %": g["inner_ess"].quantile(0.05)}).reset_index()
        L += ["## How far the conditioning can be trusted (per conditioned group)", "", markdown_table(tr, "{:.3g}"), ""]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
