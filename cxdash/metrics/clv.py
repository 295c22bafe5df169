"""Predicted customer lifetime value with probabilistic "buy till you die" models.

Pure functions and small estimator classes, fitted by maximum likelihood with
:mod:`scipy` (no ``lifetimes``, no ``pymc``). No database, no UI.

Contents
--------
* :class:`BGNBD` - BG/NBD purchase model, Fader, Hardie & Lee (2005),
  "Counting your customers the easy way", Marketing Science 24(2).
* :class:`GammaGamma` - spend-per-transaction model, Fader & Hardie (2013),
  "The Gamma-Gamma model of monetary value".
* :func:`customer_lifetime_value` - discounted CLV as ``lifetimes`` computes it.

Their inputs, per-customer RFM summaries, come from :mod:`cxdash.metrics.rfm`; the forecast on the
stored data is :mod:`cxdash.metrics.clv_forecast`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

__all__ = [
    "BGNBD",
    "ConvergenceError",
    "GammaGamma",
    "NotFittedError",
    "customer_lifetime_value",
    "floats",
]


class ConvergenceError(RuntimeError):
    """The maximum-likelihood optimiser did not produce a trustworthy optimum."""


class NotFittedError(RuntimeError):
    """A model method that needs fitted parameters was called before ``fit``."""


# ---------------------------------------------------------------------------
# helpers shared by the models
# ---------------------------------------------------------------------------


def floats(values: Any) -> np.ndarray:
    """``values`` as a float array; a pandas object through ``to_numpy``. ``np.asarray`` on a
    Series asks it for numpy's array attributes one by one, and pandas looks each missing one up
    in the index: about 10 ms a time on a million text ids (1.1 s of a Shared KPIs view at 1M)."""
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)


def _as_float_array(name: str, values: Any) -> np.ndarray:
    arr = floats(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _index_of(*candidates: Any) -> pd.Index | None:
    for c in candidates:
        if isinstance(c, pd.Series):
            return c.index
    return None


def _wrap(values: np.ndarray, index: pd.Index | None, name: str) -> np.ndarray | pd.Series:
    if index is not None and values.ndim == 1 and len(values) == len(index):
        return pd.Series(values, index=index, name=name)
    return values


def _check_frt(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _as_float_array("frequency", frequency)
    tx = _as_float_array("recency", recency)
    TT = _as_float_array("T", T)
    if not (len(x) == len(tx) == len(TT)):
        raise ValueError("frequency, recency and T must have the same length")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must contain non-negative integers (repeat purchase counts)")
    if np.any(tx < 0) or np.any(TT <= 0):
        raise ValueError("recency must be >= 0 and T must be > 0")
    if np.any(tx > TT + 1e-9):
        raise ValueError("recency must not exceed T (time of last purchase after the observation end?)")
    if np.any((x == 0) & (tx != 0)):
        raise ValueError("recency must be 0 for customers with frequency 0")
    return x, tx, TT


@dataclass(frozen=True)
class _FitResult:
    log_params: np.ndarray
    loglik: float
    message: str
    n_restarts_ok: int
    hessian_log: np.ndarray  # Hessian of the total (n * mean) objective w.r.t. log-parameters


def _hessian_log(neg_ll_and_grad, logp: np.ndarray, n: int, h: float = 1e-5) -> np.ndarray:
    """Central finite differences of the analytic gradient, symmetrised, scaled to the total NLL."""
    k = len(logp)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        H[:, i] = (neg_ll_and_grad(logp + e)[1] - neg_ll_and_grad(logp - e)[1]) / (2.0 * h)
    return 0.5 * (H + H.T) * n


def _maximise(
    neg_ll_and_grad,
    starts: list[np.ndarray],
    *,
    bound: float,
    maxiter: int,
    names: tuple[str, ...],
    model: str,
    n: int,
) -> _FitResult:
    """Minimise a (mean) negative log-likelihood over log-parameters with restarts.

    Raises :class:`ConvergenceError` when no start converges, when the best optimum
    is not finite, when a parameter ends beyond ``|log param| > bound`` (the likelihood
    keeps increasing towards 0 or infinity: the MLE does not exist; the search box
    itself is ``bound + 4``, so the optimiser can run past the limit freely), or when the
    Hessian there is not clearly positive definite (flat ridge: parameters not
    identified, the optimiser merely stopped somewhere on it).
    """
    # Imported here: scipy.optimize takes about 1.3 s to import, and everything that imports
    # cxdash.metrics (every CLI command, the journeys and risk packages) would pay it to fit nothing.
    from scipy import optimize

    best = None
    n_ok = 0
    messages = []
    for x0 in starts:
        with np.errstate(all="ignore"):
            try:
                res = optimize.minimize(
                    neg_ll_and_grad,
                    x0,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=[(-bound - 4.0, bound + 4.0)] * len(x0),
                    options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9, "maxls": 50},
                )
            except (FloatingPointError, ValueError) as exc:  # pragma: no cover - defensive
                messages.append(str(exc))
                continue
        messages.append(str(res.message))
        if not (res.success and np.isfinite(res.fun) and np.all(np.isfinite(res.x))):
            continue
        n_ok += 1
        if best is None or res.fun < best.fun:
            best = res
    if best is None:
        raise ConvergenceError(
            f"{model}: the optimiser did not converge from any of {len(starts)} starting points "
            f"(messages: {sorted(set(messages))}); no parameters were returned"
        )
    at_bound = [n for n, v in zip(names, best.x, strict=True) if abs(v) > bound]
    if at_bound:
        vals = {n: float(np.exp(v)) for n, v in zip(names, best.x, strict=True)}
        raise ConvergenceError(
            f"{model}: maximum-likelihood estimate does not exist for these data - "
            f"parameter(s) {at_bound} ran off towards 0 or infinity (beyond exp(+/-{bound:g})); "
            f"values at stop: {vals}. "
            "Typical causes: no or almost no repeat purchases, or too few customers."
        )
    with np.errstate(all="ignore"):
        H = _hessian_log(neg_ll_and_grad, best.x, n)
    eig = np.linalg.eigvalsh(H) if np.all(np.isfinite(H)) else np.array([np.nan])
    if not np.all(np.isfinite(eig)) or eig[0] <= 1e-6 * max(float(eig[-1]), 1.0):
        vals = {nm: float(np.exp(v)) for nm, v in zip(names, best.x, strict=True)}
        raise ConvergenceError(
            f"{model}: the optimiser stopped at {vals} but the log-likelihood is flat or not concave "
            f"there (Hessian eigenvalues {np.round(eig, 8).tolist()}): the parameters are not "
            "identified by these data and no estimate is returned."
        )
    return _FitResult(best.x.copy(), float(-best.fun), str(best.message), n_ok, H)


def _compress(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The distinct rows of ``columns`` (equal-length float arrays) and how many times each occurs.

    Customers with equal (frequency, recency, T) contribute equal terms to a likelihood, so a fit over
    the distinct rows weighted by their counts is the same fit; recency and T are whole periods, so a
    million customers shrink to some tens of thousands of rows (as lifetimes' ``weights`` do).
    """
    # pandas hashes the rows (0.15 s at 1M); np.unique(axis=0) sorts them as bytes (2 s).
    counted = pd.DataFrame({str(i): c for i, c in enumerate(columns)}).value_counts(sort=False)
    rows = tuple(counted.index.get_level_values(i).to_numpy(dtype=float) for i in range(len(columns)))
    return rows, counted.to_numpy(dtype=float)


def _distinct_rows(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The distinct rows of ``columns`` (equal-length float arrays) and, for each input row, the
    position of its distinct row: ``distinct[i][back]`` gives ``columns[i]`` back."""
    # Each column's values as small integer codes, combined into one int64 per row, then one
    # hash factorisation (a tenth of factorising a MultiIndex of the floats at 100k rows).
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    span = 1
    for col in columns:
        codes, uniques = pd.factorize(floats(col))
        span *= max(len(uniques), 1)
        if span >= 2**62:  # the combined code would overflow: factorise the rows themselves
            mi_codes, mi_uniques = pd.MultiIndex.from_arrays(list(columns)).factorize()
            rows = tuple(mi_uniques.get_level_values(i).to_numpy(dtype=float) for i in range(len(columns)))
            return rows, np.asarray(mi_codes)
        combined = combined * max(len(uniques), 1) + codes
    back, distinct = pd.factorize(combined)
    first = np.empty(len(distinct), dtype=np.int64)
    first[back[::-1]] = np.arange(len(back) - 1, -1, -1)  # each distinct row's first occurrence
    return tuple(floats(col)[first] for col in columns), np.asarray(back)


def _standard_errors(res: _FitResult, params: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Asymptotic standard errors from the inverse observed information (delta method from log space)."""
    cov_log = np.linalg.inv(res.hessian_log)
    se = np.sqrt(np.clip(np.diag(cov_log), 0.0, None)) * params
    return dict(zip(names, map(float, se), strict=True))


_FITTED_ATTRS = ("params_", "standard_errors_", "loglik_", "converged_", "n_customers_", "optimizer_message_")


def _reset_fit(obj: Any) -> None:
    """Forget a previous fit, so that a failed re-fit cannot leave stale parameters behind."""
    for attr in _FITTED_ATTRS:
        obj.__dict__.pop(attr, None)


def _not_fitted(obj: Any) -> NotFittedError:
    name = type(obj).__name__
    return NotFittedError(
        f"This {name} instance is not fitted yet. Call 'fit' with appropriate arguments before using this method."
    )


# ---------------------------------------------------------------------------
# BG/NBD
# ---------------------------------------------------------------------------


class BGNBD:
    """Beta-geometric / negative-binomial distribution model (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    n_restarts : int
        Number of optimiser starts: all parameters = 1; then r = a = b = 1 with
        alpha = mean(T)/e; then random log-normal perturbations of that (``random_state``).
        The best converged optimum wins.
    maxiter : int
        L-BFGS-B iteration limit per start.
    penalizer_coef : float
        Optional L2 penalty ``penalizer_coef * sum(params**2)`` added to the mean
        negative log-likelihood (as lifetimes does). 0 = plain MLE.
    max_log_param : float
        An optimum with any parameter outside [exp(-max_log_param), exp(max_log_param)]
        (default about [8e-7, 1.2e6]) is treated as "no MLE" and raises
        :class:`ConvergenceError` (e.g. a, b -> infinity: no detectable dropout).
    random_state : int | None
        Seed for the restart points.

    Attributes (after ``fit``)
    --------------------------
    params_ : dict with ``r, alpha, a, b``; ``standard_errors_`` (same keys, from the
    observed information); ``loglik_`` (total log-likelihood); ``converged_`` (True -
    every failure raises :class:`ConvergenceError` instead and leaves the instance
    unfitted); ``n_customers_``; ``optimizer_message_``.
    """

    _names = ("r", "alpha", "a", "b")

    def __init__(
        self,
        *,
        n_restarts: int = 3,
        maxiter: int = 2000,
        penalizer_coef: float = 0.0,
        max_log_param: float = 14.0,
        random_state: int | None = 0,
    ) -> None:
        self.n_restarts = n_restarts
        self.maxiter = maxiter
        self.penalizer_coef = penalizer_coef
        self.max_log_param = max_log_param
        self.random_state = random_state

    # -- likelihood -------------------------------------------------------
    @staticmethod
    def _loglik_terms(params: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> tuple:
        r, alpha, a, b = params
        has = x > 0
        ln_aT = np.log(alpha + T)
        ln_atx = np.log(alpha + tx)
        # LL_i = A1 + A2 + 1[x>0] * log(1 + exp(D))
        A1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        A2 = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * ln_aT
        bx1 = np.where(has, b + x - 1.0, 1.0)  # b + x - 1 > 0 whenever x >= 1
        D = np.where(has, np.log(a) - np.log(bx1) + (r + x) * (ln_aT - ln_atx), -np.inf)
        return A1, A2, D, has, ln_aT, ln_atx, bx1

    @classmethod
    def _loglik_per_customer(cls, params: np.ndarray, x, tx, T) -> np.ndarray:
        A1, A2, D, has, *_ = cls._loglik_terms(params, x, tx, T)
        return A1 + A2 + np.where(has, np.logaddexp(0.0, D), 0.0)

    def _objective(self, logp: np.ndarray, x, tx, T, weights=None) -> tuple[float, np.ndarray]:
        """Mean negative log-likelihood (and its gradient in log-parameters) over customers; ``weights``
        counts how many customers each row stands for (``_compress``), 1 each when None."""
        params = np.exp(logp)
        r, alpha, a, b = params
        wt = np.ones(len(x)) if weights is None else weights
        A1, A2, D, has, ln_aT, ln_atx, bx1 = self._loglik_terms(params, x, tx, T)
        ll = A1 + A2 + np.where(has, np.logaddexp(0.0, D), 0.0)
        w = np.where(has, special.expit(D), 0.0)  # = 1 - P(alive)
        dg = special.digamma
        g_r = dg(r + x) - dg(r) + np.log(alpha) - ln_aT + w * (ln_aT - ln_atx)
        g_alpha = r / alpha - (r + x) / (alpha + T) + w * (r + x) * (1.0 / (alpha + T) - 1.0 / (alpha + tx))
        g_a = dg(a + b) - dg(a + b + x) + w / a
        g_b = dg(b + x) - dg(a + b + x) - dg(b) + dg(a + b) - w / bx1
        n = wt.sum()
        grad = np.array([wt @ g_r, wt @ g_alpha, wt @ g_a, wt @ g_b]) * params  # chain rule d/dlog
        f = -(wt @ ll) / n + self.penalizer_coef * np.sum(params**2)
        g = -grad / n + self.penalizer_coef * 2.0 * params**2
        if not np.isfinite(f):
            return np.inf, np.zeros_like(logp)
        return float(f), g

    # -- fit ---------------------------------------------------------------
    def fit(self, frequency: Any, recency: Any, T: Any) -> BGNBD:
        """Maximum-likelihood fit; returns ``self``. Raises :class:`ConvergenceError` on failure."""
        _reset_fit(self)
        x, tx, TT = _check_frt(frequency, recency, T)
        if len(x) == 0:
            raise ValueError("cannot fit BGNBD on zero customers")
        if not np.any(x > 0):
            # LL = sum r*log(alpha/(alpha+T)) -> 0 as r -> 0; a, b do not enter: no MLE.
            raise ConvergenceError(
                "BGNBD: no customer has a repeat purchase (all frequency == 0); the likelihood "
                "increases towards r -> 0 and a, b are not identified, so there is no "
                "maximum-likelihood estimate. Use a longer calibration period or more customers."
            )
        rng = np.random.default_rng(self.random_state)
        base = np.array([0.0, np.log(max(np.mean(TT), 1e-6)) - 1.0, 0.0, 0.0])
        (ux, utx, uT), counts = _compress(x, tx, TT)
        starts = [np.zeros(4), base] + [base + rng.normal(0.0, 1.0, 4) for _ in range(max(self.n_restarts - 2, 0))]
        starts = [
            np.clip(s, -self.max_log_param + 1, self.max_log_param - 1) for s in starts[: max(self.n_restarts, 1)]
        ]
        res = _maximise(
            lambda p: self._objective(p, ux, utx, uT, counts),
            starts,
            bound=self.max_log_param,
            maxiter=self.maxiter,
            names=self._names,
            model="BGNBD",
            n=len(x),
        )
        params = np.exp(res.log_params)
        self.params_ = dict(zip(self._names, map(float, params), strict=True))
        self.standard_errors_ = _standard_errors(res, params, self._names)
        self.loglik_ = float(counts @ self._loglik_per_customer(params, ux, utx, uT))
        self.converged_ = True
        self.n_customers_ = len(x)
        self.optimizer_message_ = res.message
        return self

    def _p(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise _not_fitted(self)
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    # -- predictions -------------------------------------------------------
    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray | pd.Series:
        """P(customer still active at T | x, t_x, T) = 1 / (1 + 1[x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
        params = np.array(self._p())
        x, tx, TT = _check_frt(frequency, recency, T)
        _, _, D, has, *_ = self._loglik_terms(params, x, tx, TT)
        p_alive = np.where(has, special.expit(-D), 1.0)
        return _wrap(p_alive, _index_of(frequency, recency, T), "probability_alive")

    def expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> np.ndarray | pd.Series:
        """E[Y(t) | x, t_x, T]: expected purchases in (T, T+t] for each customer (FHL 2005 eq. 10).

        ``t`` is a scalar or an array broadcastable against the customers.
        """
        r, alpha, a, b = self._p()
        x, tx, TT = _check_frt(frequency, recency, T)
        t_arr = np.asarray(t, dtype=float)
        if np.any(t_arr < 0) or not np.all(np.isfinite(t_arr)):
            raise ValueError("t must be finite and >= 0")
        _, _, D, has, *_ = self._loglik_terms(np.array([r, alpha, a, b]), x, tx, TT)
        p_alive = np.where(has, special.expit(-D), 1.0)
        z = t_arr / (alpha + TT + t_arr)
        with np.errstate(all="ignore"):
            log_ratio = (r + x) * (np.log(alpha + TT) - np.log(alpha + TT + t_arr))
            hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
            term = (a + b + x - 1.0) / (a - 1.0) * (1.0 - np.exp(log_ratio) * hyp)
        out = term * p_alive
        if not np.all(np.isfinite(out)):
            raise FloatingPointError("expected_purchases: non-finite result (horizon t too large for hyp2f1?)")
        out = np.where(t_arr == 0, 0.0, out)
        return _wrap(np.asarray(out, dtype=float), _index_of(frequency, recency, T), "expected_purchases")

    def expected_purchases_new(self, t: Any) -> np.ndarray | float:
        """Unconditional E[X(t)] for a newly acquired customer (FHL 2005 eq. 9, via 2F1)."""
        r, alpha, a, b = self._p()
        t_arr = np.asarray(t, dtype=float)
        if np.any(t_arr < 0) or not np.all(np.isfinite(t_arr)):
            raise ValueError("t must be finite and >= 0")
        with np.errstate(all="ignore"):
            hyp = special.hyp2f1(r, b, a + b - 1.0, t_arr / (alpha + t_arr))
            out = (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t_arr)) ** r * hyp)
        out = np.where(t_arr == 0, 0.0, out)
        if not np.all(np.isfinite(out)):
            raise FloatingPointError("expected_purchases_new: non-finite result")
        return float(out) if out.ndim == 0 else out

    def __repr__(self) -> str:
        if hasattr(self, "params_"):
            ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"BGNBD(fitted: {ps}, loglik={self.loglik_:.2f}, n={self.n_customers_})"
        return "BGNBD(not fitted)"


# ---------------------------------------------------------------------------
# Gamma-Gamma
# ---------------------------------------------------------------------------


class GammaGamma:
    """Gamma-Gamma model of average spend per transaction (Fader & Hardie 2013).

    ``fit(frequency, monetary_value)`` uses only customers with ``frequency > 0``
    **and** ``monetary_value > 0``: one-purchase customers carry no repeat spend
    (their ``monetary_value`` is 0 by convention) and non-positive spend is outside
    the gamma support. Fewer than ``min_customers`` usable rows raise ``ValueError``.
    The model assumes spend is independent of frequency; check that (e.g. the
    correlation between ``frequency`` and ``monetary_value``) before trusting CLV.

    Attributes after fit: ``params_`` dict ``p, q, v``; ``standard_errors_``; ``loglik_``;
    ``converged_``; ``n_customers_`` (rows actually used). Optimiser failures raise
    :class:`ConvergenceError`, as for :class:`BGNBD`.
    """

    _names = ("p", "q", "v")

    def __init__(
        self,
        *,
        n_restarts: int = 3,
        maxiter: int = 2000,
        penalizer_coef: float = 0.0,
        max_log_param: float = 14.0,
        min_customers: int = 10,
        random_state: int | None = 0,
    ) -> None:
        self.n_restarts = n_restarts
        self.maxiter = maxiter
        self.penalizer_coef = penalizer_coef
        self.max_log_param = max_log_param
        self.min_customers = min_customers
        self.random_state = random_state

    @staticmethod
    def _loglik_per_customer(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        p, q, v = params
        px = p * x
        return (
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(v)
            + (px - 1.0) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(x * m + v)
        )

    def _objective(self, logp: np.ndarray, x: np.ndarray, m: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(logp)
        p, q, v = params
        px = p * x
        dg = special.digamma
        ll = self._loglik_per_customer(params, x, m)
        ln_xmv = np.log(x * m + v)
        g_p = x * (dg(px + q) - dg(px) + np.log(m) + np.log(x) - ln_xmv)
        g_q = dg(px + q) - dg(q) + np.log(v) - ln_xmv
        g_v = q / v - (px + q) / (x * m + v)
        n = len(x)
        grad = np.array([g_p.sum(), g_q.sum(), g_v.sum()]) * params
        f = -ll.sum() / n + self.penalizer_coef * np.sum(params**2)
        g = -grad / n + self.penalizer_coef * 2.0 * params**2
        if not np.isfinite(f):
            return np.inf, np.zeros_like(logp)
        return float(f), g

    def fit(self, frequency: Any, monetary_value: Any) -> GammaGamma:
        """Maximum-likelihood fit on the usable rows; returns ``self``."""
        _reset_fit(self)
        x = _as_float_array("frequency", frequency)
        m = _as_float_array("monetary_value", monetary_value)
        if len(x) != len(m):
            raise ValueError("frequency and monetary_value must have the same length")
        if np.any(x < 0) or np.any(x != np.round(x)):
            raise ValueError("frequency must contain non-negative integers")
        use = (x > 0) & (m > 0)
        n_use = int(use.sum())
        if n_use < self.min_customers:
            raise ValueError(
                f"GammaGamma needs at least {self.min_customers} customers with frequency > 0 and "
                f"monetary_value > 0; got {n_use} (of {len(x)} rows)"
            )
        x, m = x[use], m[use]
        rng = np.random.default_rng(self.random_state)
        mean_m = float(np.mean(m))
        # method-of-moments-ish start: p = 1, q = 2 -> v = mean spend * (q - 1) / p
        base = np.array([0.0, np.log(2.0), np.log(mean_m)])
        starts = [base, np.zeros(3)] + [base + rng.normal(0.0, 1.0, 3) for _ in range(max(self.n_restarts - 2, 0))]
        starts = [
            np.clip(s, -self.max_log_param + 1, self.max_log_param - 1) for s in starts[: max(self.n_restarts, 1)]
        ]
        res = _maximise(
            lambda lp: self._objective(lp, x, m),
            starts,
            bound=self.max_log_param,
            maxiter=self.maxiter,
            names=self._names,
            model="GammaGamma",
            n=n_use,
        )
        params = np.exp(res.log_params)
        self.params_ = dict(zip(self._names, map(float, params), strict=True))
        self.standard_errors_ = _standard_errors(res, params, self._names)
        self.loglik_ = float(self._loglik_per_customer(params, x, m).sum())
        self.converged_ = True
        self.n_customers_ = n_use
        self.optimizer_message_ = res.message
        return self

    def conditional_expected_average_profit(self, frequency: Any, monetary_value: Any) -> np.ndarray | pd.Series:
        """E[Z | x, zbar] = (q-1)/(p x + q - 1) * p v/(q-1) + p x/(p x + q - 1) * zbar.

        For ``frequency == 0`` this is the population mean spend ``p v / (q - 1)``
        (finite only when ``q > 1``; otherwise ``ValueError``).
        """
        if not hasattr(self, "params_"):
            raise _not_fitted(self)
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        x = _as_float_array("frequency", frequency)
        m = _as_float_array("monetary_value", monetary_value)
        if len(x) != len(m):
            raise ValueError("frequency and monetary_value must have the same length")
        if np.any(x < 0) or np.any(m < 0):
            raise ValueError("frequency and monetary_value must be >= 0")
        if q <= 1 and np.any(x == 0):
            raise ValueError(
                f"fitted q = {q:.4g} <= 1: population mean spend is infinite, "
                "cannot predict spend for customers with frequency 0"
            )
        out = p * (v + x * m) / (p * x + q - 1.0)
        return _wrap(out, _index_of(frequency, monetary_value), "expected_average_profit")

    def __repr__(self) -> str:
        if hasattr(self, "params_"):
            ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"GammaGamma(fitted: {ps}, loglik={self.loglik_:.2f}, n={self.n_customers_})"
        return "GammaGamma(not fitted)"


# ---------------------------------------------------------------------------
# CLV
# ---------------------------------------------------------------------------

_PERIODS_PER_MONTH = {"D": 30.0, "W": 4.345, "M": 1.0, "H": 30.0 * 24.0}


def customer_lifetime_value(
    bgnbd: BGNBD,
    gg: GammaGamma,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon_months: int = 12,
    discount_rate_monthly: float = 0.01,
    freq: str = "D",
) -> np.ndarray | pd.Series:
    """Discounted expected CLV over ``horizon_months`` (as ``lifetimes`` computes it).

    ``CLV = sum_{i=1..H} E[Z|x,zbar] * (E[Y(i*f)] - E[Y((i-1)*f)]) / (1 + d)^i`` with
    ``f`` periods per month (``D``: 30, ``W``: 4.345, ``M``: 1, ``H``: 720) - ``freq`` is
    the time unit of ``recency``/``T`` (use ``"W"`` for the CDNOW weekly summary).
    Spend comes from ``gg.conditional_expected_average_profit`` (so one-purchase
    customers get the population mean spend).
    """
    if freq not in _PERIODS_PER_MONTH:
        raise ValueError(f"freq must be one of {tuple(_PERIODS_PER_MONTH)}, got {freq!r}")
    if int(horizon_months) != horizon_months or horizon_months < 1:
        raise ValueError("horizon_months must be a positive integer")
    if not (np.isfinite(discount_rate_monthly) and discount_rate_monthly > -1):
        raise ValueError("discount_rate_monthly must be > -1")
    factor = _PERIODS_PER_MONTH[freq]
    spend = floats(gg.conditional_expected_average_profit(frequency, monetary_value))
    # Expected purchases depend on (frequency, recency, T) alone: computed once per distinct row
    # (a million customers share some tens of thousands) and spread back to the customers.
    x, tx, TT = _check_frt(frequency, recency, T)
    (ux, utx, uT), back = _distinct_rows(x, tx, TT)
    clv = np.zeros_like(spend)
    prev = np.zeros_like(spend)
    for i in range(1, int(horizon_months) + 1):
        cum = floats(bgnbd.expected_purchases(i * factor, ux, utx, uT))[back]
        clv += spend * (cum - prev) / (1.0 + discount_rate_monthly) ** i
        prev = cum
    return _wrap(clv, _index_of(frequency, recency, T, monetary_value), "clv")
