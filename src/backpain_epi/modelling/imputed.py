"""Posterior draws of imputed and true values back into the log-odds of analysed rows (see :mod:`.latent`).

Used by the pointwise log-likelihood (:func:`pointwise_log_likelihood`, for LOO) and by g-computation
(:func:`risks` with :func:`posterior_weights`). Nothing here imports PyMC.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from ..errors import BackpainEpiError
from .latent import ACTIVITY, BANDS, BINARY, CONTINUOUS, hsgp_basis, missing_name, prob_name, row_dim, spline_basis_pieces, \
    true_dim, true_z_name
from .params import ACT_LIN, BETA, GP_Z, SMOOTH_W
from .results import _hsgp_sqrt_psd


@dataclass
class RowLatents:
    """What the latent values add to the log-odds of some rows, per draw.

    ``shift`` (draws, rows) is added to the log-odds of the design arrays (with the latent cells zeroed);
    ``mixtures`` lists, per pattern of missing discrete columns, the rows (positions), the log prior weights
    (draws, m, K) and the log-odds shifts (draws, m, K) of the K combinations of their values.
    """

    shift: np.ndarray
    mixtures: list[tuple[np.ndarray, np.ndarray, np.ndarray]]


#: The last few arrays :func:`_post` and :func:`_activity_shift` made, keyed by (posterior, what, draws taken):
#: g-computation asks for the same arrays once per row chunk and setting, and stacking a (chains, draws, missing
#: rows) variable each time cost most of its time in latent fits. A posterior is read, never changed in place, after
#: its fit; one changed in place with the same variables and draws would be served its old arrays.
_POST_CACHE: OrderedDict = OrderedDict()
_POST_CACHE_SIZE = 16


def _cached(idata, what: str, take: np.ndarray, make) -> np.ndarray:
    """``make()`` for ``idata``'s posterior, ``what`` and the draws ``take``, from :data:`_POST_CACHE` when it is there;
    the array is read-only."""
    post = idata.posterior
    key = (id(post), what, np.asarray(take).tobytes())
    hit = _POST_CACHE.get(key)
    if hit is not None and hit[0]() is post:   # the same object, not one that took a freed id
        _POST_CACHE.move_to_end(key)
        return hit[1]
    out = make()
    out.flags.writeable = False
    _POST_CACHE[key] = (weakref.ref(post), out)
    while len(_POST_CACHE) > _POST_CACHE_SIZE:
        _POST_CACHE.popitem(last=False)
    return out


def _post(idata, name: str, take: np.ndarray) -> np.ndarray:
    """The draws ``take`` of posterior variable ``name``, (draws, ...) over chains and draws stacked; read-only."""
    return _cached(idata, name, take,
                   lambda: idata.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()[take])


def _positions(idata, var: str, dim: str, ids: np.ndarray, need: np.ndarray, what: str) -> np.ndarray:
    """Index into ``var``'s ``dim`` of each id (-1 where absent); an absent id where ``need`` raises."""
    coords = [str(i) for i in idata.posterior[var][dim].values]
    lookup = {i: k for k, i in enumerate(coords)}
    pos = np.array([lookup.get(str(i), -1) for i in ids], dtype=np.int64)
    bad = need & (pos < 0)
    if bad.any():
        raise BackpainEpiError(f"{int(bad.sum()):,} row(s) miss {what}, which the model imputes for the participants it was "
                               f"fit on only (e.g. id {ids[bad][0]}); predictions for new participants need complete values.")
    return pos


def _activity_shift(idata, recipe, entry: dict, take: np.ndarray) -> np.ndarray:
    """What the imputed activity adds to the log-odds of every row it was imputed for (draws ``take``, posterior
    positions); made once per posterior and draws (:func:`_cached`), since g-computation asks for it in every row
    chunk and setting, and the basis at draws × rows values is its largest cost."""
    def make():
        raw = _post(idata, missing_name(entry["column"]), take)
        u = np.log1p(raw) if entry["transform"] == "log1p" else raw
        act = recipe.activity
        if act["basis"] == "spline":
            B = spline_basis_pieces(u, act)
            coef = np.column_stack([_post(idata, ACT_LIN, take), _post(idata, SMOOTH_W, take)])
        else:
            B = hsgp_basis(u, act)
            coef = _post(idata, GP_Z, take) * _hsgp_sqrt_psd(idata, recipe)[take]
        return np.einsum("dmk,dk->dm", B, coef)
    return _cached(idata, "activity shift", take, make)


def row_latents(idata, recipe, rows: pd.DataFrame, take: np.ndarray, *, fixed=()) -> RowLatents | None:
    """:class:`RowLatents` of ``rows`` (analysed participants, identified by id) on the draws ``take``; ``None`` without latents.

    ``fixed`` names columns that a setting overrides (g-computation): their latent values are not used.
    """
    lat = recipe.latent
    if not lat:
        return None
    ids = rows[lat["id_column"]].astype(str).to_numpy()
    n, D = len(rows), len(take)
    shift = np.zeros((D, n))
    beta = _post(idata, BETA, take)
    terms = recipe.terms
    discrete: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # column -> (row mask, logw (D, n, K), delta (D, K))
    for e in lat["imputed"]:
        col = e["column"]
        if col in fixed:
            continue
        miss = rows[col].isna().to_numpy() if col in rows else np.zeros(n, bool)
        if e["kind"] == BANDS:
            miss = rows[col].isna().to_numpy()
        if not miss.any():
            continue
        var = missing_name(col) if e["kind"] in (CONTINUOUS, ACTIVITY) else prob_name(col)
        pos = _positions(idata, var, row_dim(col), ids, miss, f"'{col}'")[miss]
        if e["kind"] == CONTINUOUS:
            v = (_post(idata, var, take)[:, pos] - e["centre"]) / e["scale"]
            shift[:, miss] += beta[:, terms.index(e["term"]), None] * v
        elif e["kind"] == ACTIVITY:
            shift[:, miss] += _activity_shift(idata, recipe, e, take)[:, pos]
        else:
            p = _post(idata, var, take)[:, pos]
            if e["kind"] == BINARY:
                logw = np.stack([np.log1p(-p), np.log(p)], axis=-1)
                delta = np.stack([np.zeros(D), beta[:, terms.index(e["term"])]], axis=-1)
            else:
                logw = np.log(np.clip(p, 1e-300, None))
                delta = np.column_stack([beta[:, terms.index(t)] if t else np.zeros(D) for t in e["level_terms"]])
            full = np.zeros((D, n, logw.shape[-1]))
            full[:, miss] = logw
            discrete[col] = (miss, full, delta)
    for m in lat["measured"]:
        if m["exposure"] in fixed:
            continue
        ex = m["exposure"]
        pos = _positions(idata, true_z_name(ex), true_dim(ex), ids, np.zeros(n, bool), ex)
        known = pos >= 0
        if not known.any():
            continue
        se = rows[m["se"]].to_numpy(float)[known]
        z = _post(idata, true_z_name(ex), take)[:, pos[known]]
        shift[:, known] += beta[:, terms.index(m["term"]), None] * (se[None, :] * z) / m["scale"]
    mixtures = []
    if discrete:
        names = list(discrete)
        masks = np.column_stack([discrete[c][0] for c in names])
        for pattern in {tuple(r) for r in masks[masks.any(axis=1)]}:
            sel = np.flatnonzero((masks == np.array(pattern)).all(axis=1))
            cols = [c for c, hit in zip(names, pattern) if hit]
            combos = list(itertools.product(*[range(discrete[c][1].shape[-1]) for c in cols]))
            logw = np.zeros((D, len(sel), len(combos)))
            delta = np.zeros((D, 1, len(combos)))
            for k, combo in enumerate(combos):
                for c, level in zip(cols, combo):
                    logw[:, :, k] += discrete[c][1][:, sel, level]
                    delta[:, 0, k] += discrete[c][2][:, level]
            mixtures.append((sel, logw, np.broadcast_to(delta, logw.shape)))
    return RowLatents(shift=shift, mixtures=mixtures)


def bernoulli_ll(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return y * eta - np.logaddexp(0.0, eta)


def pointwise_log_likelihood(y: np.ndarray, eta: np.ndarray, lat: RowLatents | None) -> np.ndarray:
    """Log-likelihood of each row (draws, rows): Bernoulli at ``eta`` (+ the latent shift); the log of the mixture where
    discrete values are marginalised."""
    if lat is None:
        return bernoulli_ll(y[None, :], eta)
    eta = eta + lat.shift
    ll = bernoulli_ll(y[None, :], eta)
    for sel, logw, delta in lat.mixtures:
        comp = logw + bernoulli_ll(y[None, sel, None], eta[:, sel, None] + delta)
        ll[:, sel] = special.logsumexp(comp, axis=-1)
    return ll


def posterior_weights(y: np.ndarray, eta_observed: np.ndarray, lat: RowLatents) -> list[np.ndarray]:
    """Per mixture of ``lat``, the posterior probability of each combination given the row's outcome (draws, m, K)."""
    eta = eta_observed + lat.shift
    out = []
    for sel, logw, delta in lat.mixtures:
        comp = logw + bernoulli_ll(y[None, sel, None], eta[:, sel, None] + delta)
        out.append(np.exp(comp - special.logsumexp(comp, axis=-1, keepdims=True)))
    return out


def expit(eta: np.ndarray) -> np.ndarray:
    """The logistic function as ``(1 + tanh(eta / 2)) / 2``, in a new array.

    Equal to :func:`scipy.special.expit` to rounding (a test checks it) and about 2.5 times
    faster on large arrays: the g-computation evaluates it on draws × rows × nodes cells.
    """
    p = np.multiply(eta, 0.5)
    np.tanh(p, out=p)
    p *= 0.5
    p += 0.5
    return p


def risks(eta: np.ndarray, lat: RowLatents | None, weights: list[np.ndarray] | None = None) -> np.ndarray:
    """Predicted risk of each row (draws, rows); marginalised rows average their combinations by ``weights``."""
    if lat is None:
        return expit(eta)
    eta = eta + lat.shift
    p = expit(eta)
    for (sel, _, delta), w in zip(lat.mixtures, weights or []):
        p[:, sel] = (w * special.expit(eta[:, sel, None] + delta)).sum(axis=-1)
    return p


