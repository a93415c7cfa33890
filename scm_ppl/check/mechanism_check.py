"""Does each mechanism fit? Per-mechanism checks of a fitted program on held-out rows.

For every per-unit sample site, with its parents set to the row's data:

* **held-out NLL** of the mechanism (nats per row) against a marginal baseline that
  ignores the parents (a Gaussian with the column's mean and variance per component, or
  the column's frequencies with add-½ smoothing for a discrete site), with the standard
  error of the paired per-row gain;
* **PIT calibration**: the probability integral transform ``F(x | pa)`` read through the
  noise view (the CDF of the abducted noise under its base law; a randomised PIT, drawn
  uniformly between ``F(x - 1 | pa)`` and ``F(x | pa)``, for a discrete site) should be
  uniform: Kolmogorov–Smirnov test (scipy);
* **noise independence**: the abducted noise (``Φ⁻¹`` of the PIT) should be independent
  of the parents: HSIC test with a permutation p-value (a mechanism whose noise depends on
  its parent, e.g. additive noise forced on a multiplicative mechanism, fails it);
* **posterior predictive checks** (Bayesian fits): replicated data sets drawn from the
  posterior, one draw of all mechanisms each; the two-sided posterior predictive p-value
  of each site's mean and standard deviation.

For a Bayesian fit the density and the PIT are those of the posterior predictive (means
over ``num_draws`` draws of all mechanisms). The p-values of each family (KS, HSIC) are
Holm-adjusted over the sites; a site ``passes`` when neither adjusted p-value is below
``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp, ndtri
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution
from scipy import stats

from scm_ppl.check._ci import holm
from scm_ppl.check._kernels import hsic_test
from scm_ppl.core.noise import GUMBEL_MAX, noise_view
from scm_ppl.core.noise_simulation import Scm, as_scm, check_data, compiled
from scm_ppl.core.validate import check_prng_key, positive_number
from scm_ppl.errors import SettingsError

__all__ = ["MechanismCheck", "MechanismRow", "mechanisms"]


@dataclass(frozen=True)
class MechanismRow:
    """The checks of one mechanism (NaN where a check does not apply).

    Attributes
    ----------
    site, parents, discrete
        The mechanism's site, its parents and whether it is discrete.
    nll, nll_marginal
        Mean held-out negative log-likelihood per row of the mechanism, and of a marginal
        baseline (Normal, or the empirical frequencies of a discrete site).
    gain, gain_se
        ``nll_marginal - nll`` and its standard error (positive: the parents help).
    ks, ks_p
        Kolmogorov-Smirnov test of the PITs against the uniform law.
    hsic, hsic_p
        HSIC test of the abducted noise against the parents (NaN for a root).
    ppc_p
        Posterior predictive p-value of the mean and sd (NaN unless the fit is Bayesian).
    passed
        Whether the Holm-adjusted KS and HSIC p-values are at least ``alpha``.

    Examples
    --------
    One row per mechanism of a :func:`mechanisms` check, by site:

    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=300)
    >>> row = mechanisms(model, {"x": x, "y": 2 * x + rng.normal(size=300)})["y"]
    >>> row.parents, row.passed, round(row.gain, 1)  # nats per row gained over the marginal
    (('x',), True, 0.9)
    """

    site: str
    parents: tuple[str, ...]
    discrete: bool
    nll: float
    nll_marginal: float
    gain: float
    gain_se: float
    ks: float
    ks_p: float
    hsic: float
    hsic_p: float
    ppc_p: float
    passed: bool


@dataclass(frozen=True, eq=False, kw_only=True)
class MechanismCheck:
    """The verdict of :func:`mechanisms`: one :class:`MechanismRow` per mechanism.

    ``failed`` lists the sites that fail a check, ``check[site]`` is a site's row and
    :meth:`table` lists them all.

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=300)
    >>> check = mechanisms(model, {"x": x, "y": 2 * x + rng.normal(size=300)})
    >>> check
    MechanismCheck(2 mechanisms, failed=[])
    >>> check.table()[["parents", "passed"]]  # doctest: +NORMALIZE_WHITESPACE
         parents  passed
    site
    x         ()    True
    y       (x,)    True
    """

    rows: tuple[MechanismRow, ...]
    alpha: float
    bayesian: bool

    @property
    def failed(self) -> list[str]:
        """The sites that fail a check."""
        return [r.site for r in self.rows if not r.passed]

    def __getitem__(self, site: str) -> MechanismRow:
        for r in self.rows:
            if r.site == site:
                return r
        raise KeyError(site)

    def table(self) -> Any:
        """The checks as a ``pandas.DataFrame``, one row per mechanism."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows]).set_index("site")

    def __repr__(self) -> str:
        return f"MechanismCheck({len(self.rows)} mechanisms, failed={self.failed})"


def _cdf(base: Any, u: jax.Array) -> jax.Array:
    while isinstance(base, (Independent, ExpandedDistribution, MaskedDistribution)):
        base = base.base_dist
    return base.cdf(u)


def _pit(fn: Any, x: jax.Array, noise: jax.Array, key: jax.Array) -> jax.Array:
    view = noise_view(fn)
    if view.inverse is not None:
        return _cdf(view.base, noise)
    if view.coupling == GUMBEL_MAX:
        probs = jnp.exp(fn.logits - logsumexp(fn.logits, axis=-1, keepdims=True))
        cum = jnp.cumsum(probs, axis=-1)
        idx = jnp.asarray(x, jnp.int32)[..., None]
        high = jnp.take_along_axis(cum, idx, axis=-1)[..., 0]
        low = high - jnp.take_along_axis(probs, idx, axis=-1)[..., 0]
        return low + (high - low) * jax.random.uniform(key, low.shape, low.dtype)
    return noise  # inverse-CDF coupling: the noise is the randomised PIT


def _kernel(scm: Scm, num_draws: int, ppc: bool) -> Any:
    def run(values: list, data: dict, key: jax.Array) -> Any:
        def draw(key: jax.Array) -> Any:
            kg, ka, kp, kr = jax.random.split(key, 4)
            g = scm.global_noise(values, kg)
            noise, tr = scm.abduct(values, data, ka, g)
            n = next(iter(data.values())).shape[0]
            lp, pit = {}, {}
            for s in scm.noisy:
                fn = tr[s]["fn"]
                lp[s] = jnp.reshape(fn.log_prob(tr[s]["value"]), (n, -1)).sum(1)
                pit[s] = jnp.reshape(_pit(fn, tr[s]["value"], noise[s], kp), (n, -1))
            rep = {}
            if ppc:
                sim = scm.simulate(values, scm.unit_noise(values, n, kr, g), g)
                rep = {s: (jnp.mean(sim[s]), jnp.std(sim[s])) for s in scm.noisy}
            return lp, pit, rep

        lp, pit, rep = jax.lax.map(draw, jax.random.split(key, num_draws))
        lp = {s: logsumexp(v, axis=0) - jnp.log(num_draws) for s, v in lp.items()}
        pit = {s: jnp.mean(v, axis=0) for s, v in pit.items()}
        return lp, pit, rep

    return run


def _marginal_nll(x: np.ndarray, discrete: bool) -> np.ndarray:
    x = x.reshape(len(x), -1)
    if discrete:
        out = np.zeros(len(x))
        for c in range(x.shape[1]):
            values, codes, counts = np.unique(x[:, c], return_inverse=True, return_counts=True)
            probs = (counts + 0.5) / (counts.sum() + 0.5 * len(values))
            out -= np.log(probs[codes.ravel()])
        return out
    mu, sd = x.mean(0), np.maximum(x.std(0), 1e-12)
    return -stats.norm.logpdf(x, mu, sd).sum(1)


def mechanisms(
    fitted: Any,
    data: Mapping[str, Any],
    *,
    alpha: float = 0.05,
    num_draws: int = 64,
    num_permutations: int = 200,
    rng_key: jax.Array | None = None,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> MechanismCheck:
    """Check every mechanism of a fitted program against held-out rows.

    Parameters
    ----------
    fitted
        A :class:`~scm_ppl.FittedSCM` or a NumPyro program with fixed parameters.
    data
        Held-out rows ``{site: array}`` (not used to fit), with every per-unit sample site.
    alpha
        Level of the KS and HSIC tests (Holm-adjusted over the sites).
    num_draws
        Posterior draws of all mechanisms for a Bayesian fit (ignored otherwise).
    num_permutations
        Permutations of the HSIC test.
    rng_key, plate, size_arg, model_kwargs
        A JAX PRNG key (randomised PITs, posterior draws); the program's unit plate and
        arguments.

    Returns
    -------
    MechanismCheck
        :meth:`~MechanismCheck.table` lists every check per mechanism.

    Raises
    ------
    DataError
        A per-unit sample site's column is missing, holds NaN/inf, or rows differ.
    CriticismError
        A program without a per-unit plate.

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=1000)
    >>> mechanisms(model, {"x": x, "y": 2 * x + rng.normal(size=1000)}).failed
    []
    """
    if not 0 < positive_number("alpha", alpha) < 1:
        raise SettingsError(f"alpha must lie in (0, 1); got {alpha!r}.")
    scm = as_scm(fitted, plate=plate, size_arg=size_arg, model_kwargs=model_kwargs)
    table = check_data(data, list(scm.noisy), scm=scm)
    draws = num_draws if scm.globals else 1
    ppc = scm.bayesian
    run = compiled("mechanisms", scm, (draws, ppc, tuple(table)), lambda: _kernel(scm, draws, ppc))
    lp, pit, rep = jax.device_get(
        run(
            scm.values,
            {s: jnp.asarray(v) for s, v in table.items()},
            (jax.random.key(0) if rng_key is None else check_prng_key(rng_key)),
        )
    )
    rows: list[dict[str, Any]] = []
    for s in scm.noisy:
        x = table[s]
        disc = s in scm.discrete
        nll = -np.asarray(lp[s], float)
        base = _marginal_nll(x, disc)
        gain = base - nll
        u = np.clip(np.asarray(pit[s], float), 1e-12, 1 - 1e-12)
        ks = stats.kstest(u.ravel(), "uniform") if np.all(np.isfinite(u)) else None
        parents = tuple(scm.parents(s))
        hs, hp = float("nan"), float("nan")
        if parents and np.all(np.isfinite(u)):
            z = np.asarray(ndtri(u))
            pa = np.concatenate([table[p].reshape(len(x), -1) for p in parents if p in table], 1)
            hs, hp = hsic_test(z, pa, num_permutations=num_permutations)
        ppc_p = float("nan")
        if ppc:
            means, sds = (np.asarray(v) for v in rep[s])
            ps = [
                2 * min(np.mean(sim >= obs), np.mean(sim <= obs))
                for sim, obs in ((means, x.mean()), (sds, x.std()))
            ]
            ppc_p = float(min(1.0, min(ps)))
        rows.append(
            dict(
                site=s, parents=parents, discrete=disc, nll=float(nll.mean()),
                nll_marginal=float(base.mean()), gain=float(gain.mean()),
                gain_se=float(gain.std(ddof=1) / np.sqrt(len(gain))),
                ks=float(ks.statistic) if ks else float("nan"),
                ks_p=float(ks.pvalue) if ks else float("nan"), hsic=hs, hsic_p=hp, ppc_p=ppc_p,
            )
        )  # fmt: skip
    ks_adj = holm(np.nan_to_num([r["ks_p"] for r in rows], nan=1.0))
    hsic_adj = holm(np.nan_to_num([r["hsic_p"] for r in rows], nan=1.0))
    out = tuple(
        MechanismRow(**r, passed=bool(a >= alpha and b >= alpha))
        for r, a, b in zip(rows, ks_adj, hsic_adj, strict=True)
    )
    return MechanismCheck(rows=out, alpha=alpha, bayesian=ppc)
