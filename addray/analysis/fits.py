"""Exact match against model size: a logistic curve in log10(parameters).

    exact_match(N) = ceiling / (1 + exp(-k (log10 N - log10 N50)))

Fitted by least squares over trials (each config at its best learning rate). A trial
stopped before its budget (pruned, out of time) is censored: its exact match is a lower
bound, so only a curve below it counts as an error. The fit refuses, with the reason,
when the data cannot support a curve: fewer than three sizes, no signal, or a curve
that misses its own points (RMS residual of the sizes' means over 0.1, or more than 0.1
below a lower bound). A level such as N50 or N99 is quoted only when measured sizes lie on both
sides of it; otherwise ``why_not`` says which side it is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit

MAX_RMS = 0.1  # RMS residual (exact match) beyond which the curve is not a description
MAX_BOUND_GAP = 0.1  # how far the curve may pass below a censored lower bound


class FitError(ValueError):
    """The data cannot support a fit; the message says why."""


def logistic(x: np.ndarray, k: float, x50: float, ceiling: float = 1.0) -> np.ndarray:
    """Exact match at x = log10(parameters): ceiling / (1 + exp(-k (x - x50)))."""
    return ceiling / (1.0 + np.exp(-k * (x - x50)))


@dataclass
class LogisticFit:
    k: float
    log10_n50: float
    ceiling: float
    n_points: int
    n_censored: int
    rms: float = 0.0  # RMS residual of the uncensored sizes' mean exact match
    sizes: dict[float, tuple[float, bool]] = field(default_factory=dict)  # N -> (mean, cut)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95%: k, n50, n99
    boot: list[tuple[float, float, float]] = field(default_factory=list)  # (k, x50, ceiling)

    def params_for(self, level: float) -> float:
        """Parameters at which the curve reaches ``level`` (inf if it never does)."""
        if self.ceiling <= level:
            return math.inf
        return 10 ** (self.log10_n50 - math.log(self.ceiling / level - 1) / self.k)

    @property
    def n50(self) -> float:
        return self.params_for(0.5)

    @property
    def n99(self) -> float:
        return self.params_for(0.99)

    def predict(self, params: np.ndarray) -> np.ndarray:
        return logistic(np.log10(params), self.k, self.log10_n50, self.ceiling)

    def band(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 95% band of the curve at ``params``: the 2.5th and 97.5th percentiles of
        the bootstrap curves (the curve itself twice when there are none)."""
        x = np.log10(np.asarray(params, dtype=float))
        if not self.boot:
            mid = self.predict(10 ** x)
            return mid, mid
        curves = np.array([logistic(x, k, x50, c) for k, x50, c in self.boot])
        return np.percentile(curves, 2.5, axis=0), np.percentile(curves, 97.5, axis=0)

    def why_not(self, level: float) -> str | None:
        """None if the measured sizes bracket ``level`` (some size below it, some at or
        above it, uncensored), so the curve interpolates there; else what can be said."""
        done = {n: m for n, (m, cut) in self.sizes.items() if not cut}
        below = [n for n, m in done.items() if m < level]
        above = [n for n, m in done.items() if m >= level]
        if below and above:
            return None
        if above:
            return f"every size that ran its budget reaches {level:.0%}: below {min(above):,.0f}"
        if below:
            return f"no size that ran its budget reaches {level:.0%}: above {max(below):,.0f}"
        return "no size ran its budget"


def _fit_once(x: np.ndarray, y: np.ndarray, censored: np.ndarray,
              ceiling: bool) -> np.ndarray:
    def residuals(p: np.ndarray) -> np.ndarray:
        r = logistic(x, *p) - y
        # a censored trial's accuracy is a lower bound: only a prediction below it is wrong
        return np.where(censored, np.minimum(r, 0.0), r)

    def jacobian(p: np.ndarray) -> np.ndarray:
        # the derivatives written out (one evaluation, not one per parameter): with
        # s = 1 / (1 + exp(-k (x - x50))) the curve is c s, and s' = s (1 - s)
        k, x50 = p[0], p[1]
        c = p[2] if ceiling else 1.0
        s = expit(k * (x - x50))
        slope = c * s * (1.0 - s)
        columns = [slope * (x - x50), -slope * k] + ([s] if ceiling else [])
        jac = np.stack(columns, axis=1)
        flat = censored & (logistic(x, *p) - y > 0.0)  # min(r, 0) is 0 there
        jac[flat] = 0.0
        return jac

    lo = [0.05, x.min() - 3.0] + ([0.05] if ceiling else [])
    hi = [50.0, x.max() + 3.0] + ([1.0] if ceiling else [])
    best = None
    for x50 in np.linspace(x.min(), x.max(), 5):
        for k in (0.5, 2.0, 8.0):
            start = [k, x50] + ([0.9] if ceiling else [])
            sol = least_squares(residuals, start, jac=jacobian, bounds=(lo, hi))
            if best is None or sol.cost < best.cost:
                best = sol
    return best.x


def fit_logistic(params: np.ndarray, accuracy: np.ndarray, censored: np.ndarray | None = None,
                 ceiling: bool = False, n_boot: int = 200, seed: int = 0) -> LogisticFit:
    """Fit exact match vs log10(parameters), with bootstrap 95% intervals over trials
    (module docstring); raises FitError with the reason when the data cannot support it."""
    params = np.asarray(params, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    cens = np.zeros_like(y, dtype=bool) if censored is None else np.asarray(censored, bool)
    ok = np.isfinite(params) & np.isfinite(y) & (params > 0)
    params, y, cens = params[ok], y[ok], cens[ok]
    need = 4 if ceiling else 3
    distinct = len(np.unique(params))
    if distinct < need:
        raise FitError(f"a logistic fit{' with a ceiling' if ceiling else ''} needs at least "
                       f"{need} distinct model sizes; got {distinct}")
    if len(np.unique(params[~cens])) < 2:
        raise FitError("fewer than two sizes ran their budget (the rest are lower bounds)")
    if np.nanmax(y) < 0.05:
        raise FitError(f"no model reached 5% exact match (best {np.nanmax(y):.2%}), so there "
                       f"is no curve to fit")
    x = np.log10(params)
    p = _fit_once(x, y, cens, ceiling)
    fit = LogisticFit(k=float(p[0]), log10_n50=float(p[1]),
                      ceiling=float(p[2]) if ceiling else 1.0, n_points=len(y),
                      n_censored=int(cens.sum()))
    pred = fit.predict(params)
    # the curve describes the mean at a size: seeds scatter around it (at the middle of
    # the rise by tens of points), so it is judged on the sizes' means
    done = np.unique(params[~cens])
    means = np.array([y[~cens][params[~cens] == n].mean() for n in done])
    fit.rms = float(np.sqrt(np.mean((fit.predict(done) - means) ** 2)))
    gap = float(np.max(y[cens] - pred[cens], initial=0.0))
    if fit.rms > MAX_RMS:
        raise FitError(f"the logistic curve misses its points (RMS residual {fit.rms:.2f} > "
                       f"{MAX_RMS}): exact match does not follow one S-curve in size here")
    if gap > MAX_BOUND_GAP:
        raise FitError(f"the best logistic curve passes {gap:.2f} below a lower bound "
                       f"(a pruned or cut trial): the censored points contradict it")
    for n in np.unique(params):
        at = params == n
        fit.sizes[float(n)] = (float(np.mean(y[at])), bool(cens[at].all()))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(params[idx])) < need or len(np.unique(params[idx][~cens[idx]])) < 2:
            continue
        samples.append(_fit_once(x[idx], y[idx], cens[idx], ceiling))
    if samples:
        boots = [LogisticFit(float(s[0]), float(s[1]), float(s[2]) if ceiling else 1.0, 0, 0)
                 for s in samples]
        fit.boot = [(b.k, b.log10_n50, b.ceiling) for b in boots]
        for name in ("k", "n50", "n99"):
            values = np.array([getattr(b, name) for b in boots], dtype=float)
            # no interpolation at the bounds: N99 may be inf (never reached) in some samples
            fit.ci[name] = (float(np.percentile(values, 2.5, method="lower")),
                            float(np.percentile(values, 97.5, method="higher")))
    return fit
