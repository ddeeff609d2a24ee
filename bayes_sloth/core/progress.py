"""Progress of a fit: what ``SkillsLaw(progress=True)`` shows, one display per fit.

The sampler tells a reporter two kinds of news, from the host, never from
inside a compiled program (a program with a host callback is never kept in
the on-disk compile cache):

- ``reporter.stage(text)``: what the fit is doing before and between the
  chains' iterations ("variational start", "compiling the sampler", ...);
- ``reporter(chain, iteration, total, phase, divergences=0)``: after each
  piece of about 5 % of a chain's warm-up and of its draws (``phase`` is
  "warm-up" or "sampling"; ``divergences``: the divergent transitions among
  the draws of that piece).

:class:`FitProgress` keeps that state (stage, each chain's iterations and
phase, divergences, elapsed time, and an ETA measured from the chains'
own pace) and renders it as one line. Its displays:

- :class:`NotebookDisplay`: in a Jupyter kernel, one output updated in place
  (an ipywidgets ``HTML`` widget where ipywidgets is installed, else one
  display with an HTML ``<progress>`` bar and a plain-text line), so a fit
  cell has a single progress output;
- :class:`LineDisplay`: elsewhere, one line on stderr rewritten in place on
  a terminal, or (output to a file or a pipe) a line at each stage and at
  every 10 % of the iterations, each with elapsed time and ETA (what the
  command line prints).

:func:`display_for` picks one. Any callable ``(chain, iteration, total,
phase)`` can stand in for them (``SkillsLaw(progress=callable)``): it hears
the chains' news only (:func:`as_reporter`).
"""

from __future__ import annotations

import html
import sys
import threading
import time


def _clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class FitProgress:
    """The state of one fit's progress, rendered as one line by :meth:`line`; subclasses show it.

    ``chains`` chains of ``warmup`` warm-up iterations and ``draws`` kept
    draws each (with ``auto``, ``draws`` is the cap, ``max_draws``: the fit
    may stop sooner, and the ETA is then an upper bound). Reports may come
    from several threads at once (chains in parallel): every change holds a
    lock. :meth:`show` is called on each change of stage or phase, and
    otherwise at most every ``interval`` seconds.
    """

    interval = 0.5

    def __init__(self, n_chains: int = 1, n_warmup: int = 0, n_draws: int = 0, *, auto: bool = False,
                 clock=time.monotonic):
        self._clock = clock
        self._lock = threading.RLock()
        self.begin(n_chains, n_warmup, n_draws, auto=auto)

    def begin(self, chains: int, warmup: int, draws: int, *, auto: bool = False) -> None:
        """Start over for a fit of ``chains`` x (``warmup`` + ``draws``) iterations (``fit`` calls it, so one
        display object can serve several fits, one after another)."""
        with self._lock:
            self.chains, self.warmup, self.draws, self.auto = int(chains), int(warmup), int(draws), bool(auto)
            self.t0 = self._clock()
            self.stage_text = "starting"
            self.iterations = [0] * self.chains
            self.phases = ["waiting"] * self.chains
            self.divergences = 0
            self.done = False
            self._first = None  # (time, iterations done) once every chain running at once has reported
            self._reported: set = set()
            self._at_once = self.chains
            self._shown_at = -float("inf")
            self._started()

    def _started(self) -> None:
        """After :meth:`begin` (subclasses)."""

    def running_at_once(self, n: int) -> None:
        """How many chains run side by side (the sampler says: devices in parallel, all vectorized, one
        sequential): the pace is measured once that many have reported, since each of them first waits for
        its program to be compiled or read."""
        with self._lock:
            self._at_once = max(1, min(int(n), self.chains))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---------------------------------------------------------------- news
    def stage(self, text: str) -> None:
        """What the fit is doing now (shown at once)."""
        with self._lock:
            self.stage_text = str(text)
            self._show(force=True)

    def __call__(self, chain: int, iteration: int, total: int, phase: str, divergences: int = 0) -> None:
        with self._lock:
            c = int(chain)
            if not 0 <= c < self.chains:
                return
            if int(total) - self.warmup != self.draws:  # draws="auto" reports against its cap
                self.draws = int(total) - self.warmup
            changed = phase != self.phases[c]
            self.iterations[c] = int(iteration)
            self.phases[c] = str(phase)
            self.divergences += int(divergences)
            self._reported.add(c)
            if self._first is None and len(self._reported) >= self._at_once:
                self._first = (self._clock(), self.done_iterations)
            self.stage_text = "sampling" if any(p == "sampling" for p in self.phases) else "warm-up"
            self._show(force=changed)

    def close(self, text: str | None = None) -> None:
        """The fit is over: show the final line (``text``, or a summary)."""
        with self._lock:
            self.done = True
            self.stage_text = text or (f"done: {self.chains} chain(s) x ({self.warmup} warm-up + "
                                       f"{self.done_draws()} draws)")
            self._show(force=True)
            self._finish()

    # ---------------------------------------------------------------- numbers
    @property
    def total_iterations(self) -> int:
        return self.chains * (self.warmup + self.draws)

    @property
    def done_iterations(self) -> int:
        return sum(self.iterations)

    def done_draws(self) -> int:
        return max((max(i - self.warmup, 0) for i in self.iterations), default=0)

    def fraction(self) -> float:
        return min(self.done_iterations / max(self.total_iterations, 1), 1.0)

    def elapsed(self) -> float:
        return self._clock() - self.t0

    def eta(self) -> float | None:
        """Seconds left at the pace the chains have kept since every chain running at once reported (None
        until then: before, one device may still be compiling). Warm-up's first windows take the longest
        steps, so early on it overstates; with draws='auto' it counts every draw up to the cap."""
        if self._first is None or self.done or self.done_iterations >= self.total_iterations:
            return None
        t1, n1 = self._first
        dt, dn = self._clock() - t1, self.done_iterations - n1
        if dn <= 0 or dt <= 0:
            return None
        return (self.total_iterations - self.done_iterations) * dt / dn

    def chain_text(self) -> str:
        parts = []
        for c, (i, p) in enumerate(zip(self.iterations, self.phases)):
            if p == "waiting":
                parts.append(f"{c}: waiting")
            elif i >= self.warmup + self.draws:
                parts.append(f"{c}: done")
            else:
                parts.append(f"{c}: {p} {i}/{self.warmup + self.draws}")
        return "chain " + ", ".join(parts)

    def line(self) -> str:
        """One line: stage, iterations, each chain, divergences, elapsed time and ETA."""
        bits = [f"fit: {self.stage_text}"]
        if self._reported and not self.done:
            bits.append(f"{self.fraction():.0%} of {self.total_iterations} iterations ({self.chain_text()})")
        if self._reported or self.done:
            bits.append(f"{self.divergences} divergence{'' if self.divergences == 1 else 's'}")
        bits.append(f"{_clock(self.elapsed())} elapsed")
        eta = self.eta()
        if eta is not None:
            bits.append(("at most " if self.auto else "about ") + f"{_clock(eta)} left"
                        + (" (draws='auto' stops when the checks pass)" if self.auto else ""))
        return " | ".join(bits)

    # ---------------------------------------------------------------- display
    def _show(self, force: bool = False) -> None:
        now = self._clock()
        if force or now - self._shown_at >= self.interval:
            self._shown_at = now
            self.show()

    def show(self) -> None:
        """Render the state (subclasses); called with the lock held."""

    def _finish(self) -> None:
        """After the last :meth:`show` (subclasses)."""


class LineDisplay(FitProgress):
    """One line on ``stream`` (stderr): rewritten in place on a terminal; elsewhere (a file, a pipe, a log) a
    new line at each stage and every 10 % of the iterations, so a log stays short."""

    def __init__(self, n_chains=1, n_warmup=0, n_draws=0, *, auto=False, stream=None, inplace: bool | None = None,
                 **kw):
        self.stream = sys.stderr if stream is None else stream
        if inplace is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                inplace = bool(isatty and isatty())
            except (OSError, ValueError):
                inplace = False
        self.inplace = inplace
        super().__init__(n_chains, n_warmup, n_draws, auto=auto, **kw)

    def _started(self) -> None:
        self._last = None  # (stage, tenth) of the last line written (not in place)
        self._width = 0

    def show(self) -> None:
        text = self.line()
        if self.inplace:
            pad = " " * max(self._width - len(text), 0)
            self._width = len(text)
            self._write("\r" + text + pad)
        else:
            key = (self.stage_text, int(10 * self.fraction()))
            if key != self._last:
                self._last = key
                self._write(text + "\n")

    def _finish(self) -> None:
        if self.inplace:
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream never stops a fit
            pass


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython already loaded and running a kernel); imports nothing."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookDisplay(FitProgress):
    """One output in the notebook, updated in place: an ipywidgets ``HTML`` widget where ipywidgets is
    installed, else one display (an HTML ``<progress>`` bar and the same line as plain text) updated through
    its display id. Never stderr, never tqdm: a fit cell gets exactly one progress output."""

    def __init__(self, n_chains=1, n_warmup=0, n_draws=0, *, auto=False, widget: bool | None = None, **kw):
        self._use_widget = widget
        super().__init__(n_chains, n_warmup, n_draws, auto=auto, **kw)

    def _started(self) -> None:  # a new output for each fit
        from IPython.display import display

        self._widget = self._handle = None
        if self._use_widget is not False:
            try:
                import ipywidgets
            except ImportError:
                ipywidgets = None
            if ipywidgets is not None:
                self._widget = ipywidgets.HTML(value=self.html())
                display(self._widget)
        if self._widget is None:
            self._handle = display(self.bundle(), raw=True, display_id=True)

    def html(self) -> str:
        value = f"{self.fraction():.4f}" if (self._reported or self.done) else None
        bar = (f'<progress value="{1.0 if self.done else value}" max="1" style="width:16em;vertical-align:middle">'
               "</progress> ") if value is not None else ""
        return f'<div style="font-family:monospace;font-size:0.9em">{bar}{html.escape(self.line())}</div>'

    def bundle(self) -> dict:
        return {"text/plain": self.line(), "text/html": self.html()}

    def show(self) -> None:
        try:
            if self._widget is not None:
                self._widget.value = self.html()
            else:
                self._handle.update(self.bundle(), raw=True)
        except Exception:  # a display that cannot be updated never stops a fit
            pass


def display_for(chains: int, warmup: int, draws: int, *, auto: bool = False) -> FitProgress:
    """The display of ``progress=True``: :class:`NotebookDisplay` in a Jupyter kernel, else :class:`LineDisplay`
    on stderr."""
    if in_notebook():
        try:
            return NotebookDisplay(chains, warmup, draws, auto=auto)
        except Exception:
            pass
    return LineDisplay(chains, warmup, draws, auto=auto)


class _CallableReporter:
    """A user's ``(chain, iteration, total, phase)`` callable as a reporter: it hears the chains' news only."""

    def __init__(self, fn):
        self.fn = fn

    def stage(self, text: str) -> None:
        pass

    def __call__(self, chain, iteration, total, phase, divergences=0) -> None:
        self.fn(chain, iteration, total, phase)


def as_reporter(progress):
    """``progress`` as the sampler calls it (``.stage(text)`` and ``(chain, iteration, total, phase,
    divergences)``): a :class:`FitProgress` as it is, any other callable wrapped, None as None."""
    if progress is None or isinstance(progress, FitProgress):
        return progress
    return _CallableReporter(progress)
