"""The inventory of a law's sites, read off the model itself: one table drives dims, checks and forecasts.

:func:`site_table` traces :func:`~bayes_sloth.core.model.skills_law` once per
structure (on placeholder data of the right shapes; nothing is sampled or
compiled) and records, for every sample and deterministic site, its dims
(the names of the plates it sits in, and ``infer["event_dims"]``, as ArviZ's
``from_numpyro`` reads them) and its role, declared by the model at the site:

- ``coordinate``: a raw non-centred coordinate of another site (its ``infer``
  names ``coordinate_of``): sampled, but not checked, not read by forecasts;
- ``pooled``: a partially pooled effect, ``scale * z`` over a group (family,
  model): a new member of the group draws ``scale * z_new`` (:func:`member_size`
  values each);
- ``assembled``: a deterministic with constant entries, kept in the posterior
  only as the free site that ``infer["assembles"]`` it (the loadings);
- ``parameter`` / ``derived``: every other sampled / deterministic site.

Everything that used to list sites by hand reads this: the posterior's dims
(:mod:`bayes_sloth.core.idata`), the sites the diagnostics check, the sites a
forecast or a conditioning reads and how it draws a new family's or a new
model's effects, and the simulator's truths.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from .covariates import COVARIATES
from .links import LINK_KNOTS
from .model import ModelSpec, skills_law


@dataclass(frozen=True)
class Site:
    """One site of the law: ``kind`` is ``"sample"`` or ``"deterministic"``; see the module for ``role``."""

    name: str
    kind: str
    dims: tuple[str, ...]
    role: str
    #: for a coordinate: the site it is a coordinate of; for a pooled effect: its coordinate
    coordinate: str | None = None
    #: for a pooled effect: the site of its scale, and the group (plate) whose members it pools
    scale: str | None = None
    group: str | None = None
    #: a sampled site on the simplex (the link's knot weights): far from Gaussian near its edges
    simplex: bool = False

    @property
    def checked(self) -> bool:
        """Diagnosed on every fit: every site of the posterior but the raw coordinates."""
        return self.role in ("parameter", "pooled", "derived")

    @property
    def in_posterior(self) -> bool:
        return self.role != "assembled"


def _placeholder_data(spec: ModelSpec) -> dict:
    """Arrays of the shapes the model reads, for tracing (three models per family, one score per pair)."""
    F, J = spec.n_families, spec.n_benchmarks
    N = max(3 * F, spec.n_latent_tokens + 1, 2)
    fam = np.arange(N) % F
    om, ob = np.divmod(np.arange(N * J), J)
    data = dict(x=jnp.zeros((N, 3)), family=jnp.asarray(fam, jnp.int32), instruct=jnp.zeros(N),
                floor=jnp.zeros(J), obs_model=jnp.asarray(om, jnp.int32), obs_bench=jnp.asarray(ob, jnp.int32),
                y=jnp.full(N * J, 0.5), obs_weight=jnp.ones(N * J, bool))
    if spec.n_latent_tokens:
        data.update(latent_tokens=jnp.arange(spec.n_latent_tokens, dtype=jnp.int32),
                    standardization=jnp.asarray([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    return data


def _dims(site: dict) -> tuple[str, ...]:
    batch = [f.name for f in sorted(site["cond_indep_stack"], key=lambda f: f.dim)]
    event = list((site.get("infer") or {}).get("event_dims", []))
    return tuple(batch + event)


@lru_cache(maxsize=64)
def site_table(spec: ModelSpec) -> dict[str, Site]:
    """Every site of the law of ``spec`` (name -> :class:`Site`), in the model's order, ``y`` left out."""
    data = _placeholder_data(spec)

    def trace():
        model = handlers.seed(skills_law, jax.random.PRNGKey(0))
        tr = handlers.trace(model).get_trace(spec, **data)
        # observed sample sites are data or factors (the token regression, an offset frame's Jacobian)
        return {k: {"type": s["type"], "dims": _dims(s), "infer": dict(s.get("infer") or {}),
                    "simplex": s["type"] == "sample" and s["fn"].support is constraints.simplex}
                for k, s in tr.items() if s["type"] == "deterministic" or (s["type"] == "sample" and not s["is_observed"])}

    box = []
    jax.eval_shape(lambda: box.append(trace()))  # traced abstractly: shapes only, nothing computed or compiled
    raw = box[0]
    coordinate_of = {k: s["infer"]["coordinate_of"] for k, s in raw.items() if "coordinate_of" in s["infer"]}
    assembled = {s["infer"]["assembles"] for s in raw.values() if "assembles" in s["infer"]}
    table = {}
    for name, s in raw.items():
        kind = "sample" if s["type"] == "sample" else "deterministic"
        if name in coordinate_of:
            table[name] = Site(name, kind, s["dims"], "coordinate", coordinate=coordinate_of[name])
            continue
        coord = next((c for c, of in coordinate_of.items() if of == name), None)
        info = raw[coord]["infer"] if coord else {}
        if name in assembled:
            role = "assembled"
        elif "scale" in info:
            role = "pooled"
        else:
            role = "parameter" if kind == "sample" else "derived"
        table[name] = Site(name, kind, s["dims"], role, coordinate=coord, scale=info.get("scale"),
                           group=info.get("group"), simplex=s["simplex"])
    return table


def sampled(spec: ModelSpec) -> tuple[str, ...]:
    """Names of the sampled sites: what a fit stores, and what every other site is computed from."""
    return tuple(n for n, s in site_table(spec).items() if s.kind == "sample")


def simplex_sites(spec: ModelSpec) -> tuple[str, ...]:
    """Names of the sampled sites on a simplex, which a low-rank mass matrix leaves to its diagonal."""
    return tuple(n for n, s in site_table(spec).items() if s.kind == "sample" and s.simplex)


def checked(spec: ModelSpec) -> tuple[str, ...]:
    """Names of the sites whose R-hat and ESS decide convergence."""
    return tuple(n for n, s in site_table(spec).items() if s.checked)


def posterior_dims(spec: ModelSpec) -> dict[str, tuple[str, ...]]:
    """Dims after (chain, draw) of every site a posterior holds."""
    return {n: s.dims for n, s in site_table(spec).items() if s.in_posterior}


def law_parameters(spec: ModelSpec) -> tuple[str, ...]:
    """The posterior sites a forecast reads: every site but the raw coordinates and the per-model skills and
    imputed tokens of the fitted models (the loadings are assembled from their free entries)."""
    return tuple(n for n, s in site_table(spec).items()
                 if s.checked and not (s.role == "derived" and ("model" in s.dims or "latent_model" in s.dims)))


def pooled(spec: ModelSpec, group: str) -> tuple[Site, ...]:
    """The partially pooled effects over ``group`` (``"family"`` or ``"model"``)."""
    return tuple(s for s in site_table(spec).values() if s.role == "pooled" and s.group == group)


def dim_sizes(spec: ModelSpec) -> dict[str, int]:
    """Sizes of the dims a member's effect can have besides its group."""
    return {"skill": spec.n_skills, "benchmark": spec.n_benchmarks, "link_knot": len(LINK_KNOTS),
            "covariate": len(COVARIATES)}


def member_size(spec: ModelSpec, site: Site) -> int:
    """Number of values one member of a pooled effect's group has (K for a family efficiency, 1 for an offset)."""
    sizes = dim_sizes(spec)
    return int(np.prod([sizes[d] for d in site.dims if d != site.group], dtype=int))
