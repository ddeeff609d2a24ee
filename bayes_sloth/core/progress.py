"""Progress of a running sampler: what ``SkillsLaw(progress=True)`` shows.

The sampler calls a progress function ``(chain, iteration, total,
phase)`` about every 5 % of each chain's warm-up and of its draws, from the
host, between the pieces the chain runs in (``phase`` is
"warm-up" or "sampling"). :class:`ChainBars` is the default: one tqdm bar per
chain, in a notebook or a terminal alike (``tqdm.auto``), with the phase in
its label and an ETA. Any callable of that signature can take its place (the
command line prints a line per chain every 10 %).
"""

from __future__ import annotations


class ChainBars:
    """One tqdm progress bar per chain: iterations done, phase, rate and ETA."""

    def __init__(self, chains: int, total: int):
        from tqdm.auto import tqdm

        self._bars = [tqdm(total=total, desc=f"chain {c} warm-up", unit="it", position=c, leave=True,
                           dynamic_ncols=True) for c in range(chains)]
        self._phase = ["warm-up"] * chains

    def __call__(self, chain: int, iteration: int, total: int, phase: str) -> None:
        bar = self._bars[chain]
        if phase != self._phase[chain]:
            self._phase[chain] = phase
            bar.set_description(f"chain {chain} {phase}", refresh=False)
        if total != bar.total:  # draws="auto": the bar counts up to the cap
            bar.total = total
        bar.update(iteration - bar.n)

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
