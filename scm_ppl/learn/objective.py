"""What a fit optimises: the program scored on rows of each regime.

The optimiser's state is a pytree in unconstrained space (:func:`initial_state`):
``params`` (``numpyro.param`` sites), ``loc``/``scale`` (global latent sites: a MAP point,
or a diagonal Gaussian for ``"svi"``) and ``encoder`` (the proposal for local latents).
:class:`Objective` turns it into a loss: the negative log joint (MAP) or negative ELBO
(SVI) per row, with local latents integrated out by importance sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

from scm_ppl.core.handlers import do
from scm_ppl.core.program import baked_arguments_key, hashable
from scm_ppl.learn.data import Structure
from scm_ppl.learn.icm_penalty import IcmPair, captured_sites, icm_penalty_value
from scm_ppl.learn.regimes import Regime, regime_key

__all__ = [
    "FitEstimate",
    "Objective",
    "column_stats",
    "feature_stats",
    "initial_state",
    "num_rows",
]

_INIT_SCALE = 0.1


class FitEstimate(NamedTuple):
    """What a fitting method (gradient or NUTS) returns: the fields of a
    :class:`~scm_ppl.FittedSCM` other than the program, and its learning curve."""

    params: dict[str, Any]
    point: dict[str, jax.Array]
    loc: dict[str, jax.Array]
    scale: dict[str, jax.Array]
    samples: dict[str, jax.Array]
    losses: np.ndarray
    validation_losses: np.ndarray
    best_epoch: int
    stopped_early: bool
    seconds: float
    settings: dict[str, Any]
    penalties: np.ndarray = np.zeros(0)  # the ICM penalty per epoch (empty without one)


def num_rows(batch: Mapping[str, Any]) -> int:
    """The number of rows of a batch ``{site: array}`` (every column has as many)."""
    return len(next(iter(batch.values())))


def _log_prob_terms(
    tr: Mapping[str, Any], plate: str, n: int, skip: frozenset[str]
) -> tuple[jax.Array, jax.Array]:
    """Per-unit log density ``(n,)`` of the sites in the plate, and the log density of
    everything outside it. ``skip``: local latents drawn from their prior, whose density
    cancels against the proposal."""
    unit = jnp.zeros(n)
    outside = jnp.zeros(())
    for name, site in tr.items():
        if site["type"] != "sample" or name in skip:
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == plate), None)
        lp = site["fn"].log_prob(site["value"])
        if site.get("mask") is not None:
            lp = jnp.where(site["mask"], lp, 0.0)
        if site.get("scale") is not None:
            lp = site["scale"] * lp
        if frame is None:
            outside = outside + jnp.sum(lp)
        else:
            axis = jnp.ndim(lp) + frame.dim
            unit = unit + jnp.sum(lp, axis=tuple(i for i in range(jnp.ndim(lp)) if i != axis))
    return unit, outside


def _per_unit(x: jax.Array, n: int) -> jax.Array:
    return jnp.broadcast_to(x, (n, *jnp.shape(x)[1:])).reshape(n, -1).sum(-1) if jnp.ndim(x) else x


class Objective:
    """Scores rows of each regime under the program: the loss of a step and of a split.

    Local latent sites are integrated out per unit by importance sampling: continuous ones
    from an amortised Gaussian proposal ``q(z | row) = N(A f + a, softplus(B f + b))``, a
    linear encoder of the row's standardised data ``f`` learned with the model (exact for
    linear-Gaussian SCMs), in the site's unconstrained space; discrete ones from their prior.
    """

    def __init__(
        self,
        model: Callable,
        plate: str,
        size_arg: str,
        kwargs: dict[str, Any],
        regimes: list[Regime],
        labels: list[int],
        structure: Structure,
        local: dict[str, tuple[int, ...]],
        num_particles: int,
        bayesian: bool,
        icm_penalty: float = 0.0,
        icm_pairs: Sequence[IcmPair] = (),
    ) -> None:
        self.model, self.plate, self.size_arg, self.kwargs = model, plate, size_arg, kwargs
        self.regimes, self.labels, self.structure = regimes, labels, structure
        self.num_particles, self.bayesian = num_particles, bayesian
        discrete = {k for k in local if getattr(structure.supports[k], "is_discrete", False)}
        self.prior_local = frozenset(discrete)
        self.local = {k: v for k, v in local.items() if k not in discrete}
        self.icm_penalty, self.icm_pairs = float(icm_penalty), list(icm_pairs)
        self.captured = captured_sites(self.icm_pairs)

    def epoch_key(
        self, optimizer_key: Any, sizes: Sequence[tuple[int, int]], steps: int, *layout: Any
    ) -> tuple:
        """The cache key of a compiled epoch of this objective: everything the epoch reads
        off it, and its shape. A compiled epoch closes over the objective it was built
        from, so two objectives may share one only where this key is equal.

        ``optimizer_key`` names the optimiser (its hyperparameters live in its state),
        ``sizes`` are ``(rows, minibatch rows)`` per regime, ``steps`` the steps of an
        epoch; ``layout`` is whatever else the caller's epoch bakes in (the rows a chunk's
        loss is per, the device mesh).

        Examples
        --------
        >>> import numpyro, numpyro.distributions as dist
        >>> from scm_ppl.learn.data import Structure
        >>> def model(n):
        ...     with numpyro.plate("unit", n):
        ...         numpyro.sample("x", dist.Normal(0.0, 1.0))
        >>> structure = Structure({}, {}, {}, {"x": dist.constraints.real})
        >>> def key(particles):  # of an objective built afresh
        ...     o = Objective(model, "unit", "n", {}, [{}], [-1], structure, {}, particles, False)
        ...     return o.epoch_key("adam", [(100, 10)], 10)
        >>> key(1) == key(1), key(1) == key(4)
        (True, False)
        """
        s = self.structure
        return (
            hashable(self.model),
            self.plate,
            self.size_arg,
            # Baked in as constants: keyword arrays (PRNG keys too) and the supports and
            # constraints (pytrees whose bounds may be arrays), by value.
            baked_arguments_key((), self.kwargs),
            baked_arguments_key((), {"supports": s.supports, "constraints": s.constraints}),
            tuple(sorted(self.local.items())),  # which sites the epoch integrates out
            self.prior_local,
            tuple(regime_key(spec) for spec in self.regimes),
            tuple(self.labels),
            self.num_particles,
            self.bayesian,
            self.icm_penalty,
            tuple(self.icm_pairs),
            optimizer_key,
            tuple(sizes),
            steps,
            *layout,
        )

    def program(self, label: int, batch: Mapping[str, jax.Array], values: Mapping) -> Callable:
        program: Callable = handlers.substitute(self.model, data=dict(values))
        spec = self.regimes[label] if label >= 0 else {}
        if spec:
            program = do(program, {s: batch[s] if iv is None else iv for s, iv in spec.items()})
        set_sites = {s for s, iv in spec.items() if iv is None or iv.kind == "hard"}
        observed: dict[str, Any] = {s: v for s, v in batch.items() if s not in set_sites}
        return handlers.condition(program, data=observed)

    def _features(self, batch: Mapping[str, jax.Array], n: int, const: Mapping) -> jax.Array:
        parts = [
            ((jnp.asarray(batch[s], jnp.float32) - const["mean"][s]) / const["std"][s]).reshape(
                n, -1
            )
            for s in sorted(const["mean"])
        ]
        return jnp.concatenate(parts, axis=-1)

    def terms_and_sites(
        self,
        values: Mapping,
        encoder: Mapping,
        label: int,
        batch: Mapping,
        n: int,
        key: jax.Array,
        const: Mapping,
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Per-unit log-likelihood estimate ``(n,)``, the log density outside the plate, and
        the values of the sites the ICM penalty reads (first particle)."""
        program = self.program(label, batch, values)
        kwargs = {self.size_arg: n, **self.kwargs}
        proposals = {}
        if self.local:
            f = self._features(batch, n, const)
            for site, e in encoder.items():
                loc = f @ e["w_loc"] + e["b_loc"]
                proposals[site] = (loc, jax.nn.softplus(f @ e["w_scale"] + e["b_scale"]))

        def once(key: jax.Array) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
            sample_key, run_key = jax.random.split(key)
            drawn, log_q = {}, jnp.zeros(n)
            for i, (site, (loc, scale)) in enumerate(sorted(proposals.items())):
                z = loc + scale * jax.random.normal(jax.random.fold_in(sample_key, i), loc.shape)
                z_site = z.reshape((n, *self.local[site]))
                transform = biject_to(self.structure.supports[site])
                drawn[site] = transform(z_site)
                log_q = log_q + jnp.sum(dist.Normal(loc, scale).log_prob(z), axis=-1)
                log_q = log_q - _per_unit(transform.log_abs_det_jacobian(z_site, drawn[site]), n)
            run = handlers.substitute(program, data=drawn) if drawn else program
            tr = handlers.trace(handlers.seed(run, run_key)).get_trace(**kwargs)
            unit, outside = _log_prob_terms(tr, self.plate, n, self.prior_local)
            return unit - log_q, outside, {s: tr[s]["value"] for s in self.captured}

        if self.num_particles == 1:
            return once(key)
        unit, outside, sites = jax.vmap(once)(jax.random.split(key, self.num_particles))
        log_mean = jax.nn.logsumexp(unit, axis=0) - math.log(self.num_particles)
        return log_mean, outside[0], {s: v[0] for s, v in sites.items()}

    def constrain(self, state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.structure
        params = {
            k: jax.tree.map(biject_to(s.constraints[k]), v) for k, v in state["params"].items()
        }
        point = {k: biject_to(s.supports[k])(v) for k, v in state["loc"].items()}
        return params, point

    def loss_and_penalty(
        self,
        state: Mapping[str, Any],
        batches: list,
        key: jax.Array,
        const: Mapping,
        sizes: list,
        total: int,
        shard: Any = None,
    ) -> tuple[jax.Array, jax.Array]:
        """The loss per row from minibatches: the negative log joint (MAP) or negative ELBO
        (SVI) plus the ICM penalty ``λ Σ (log ρ)²``; and, apart, that penalty.

        ``shard`` (data-parallel fits, :mod:`scm_ppl.learn.distributed`): ``(index, row
        weights per regime, fold)`` of this device's part of the rows; its losses sum over
        the devices to the loss of all rows, so the terms outside the plate count on device
        0 alone, and ``fold`` gives each device its own draws of local latents."""
        params, values = self.constrain(state)
        keys = jax.random.split(key, len(batches) + 1)
        weights: list = [None] * len(batches)
        first = jnp.ones(())
        if shard is not None:
            index, weights, fold = shard
            first = (index == 0).astype(jnp.float32)
            if fold:
                keys = keys.at[:-1].set(jax.vmap(lambda k: jax.random.fold_in(k, index))(keys[:-1]))
        log_q = jnp.zeros(())
        if self.bayesian:
            for i, (name, loc) in enumerate(sorted(state["loc"].items())):
                scale = jax.nn.softplus(state["scale"][name])
                z = loc + scale * jax.random.normal(jax.random.fold_in(keys[-1], i), loc.shape)
                transform = biject_to(self.structure.supports[name])
                values[name] = transform(z)
                log_q = log_q + jnp.sum(dist.Normal(loc, scale).log_prob(z))
                log_q = log_q - jnp.sum(transform.log_abs_det_jacobian(z, values[name]))
        log_joint = -log_q * first
        captured: dict[str, jax.Array] = {}
        for i, (label, batch, (rows, size)) in enumerate(
            zip(self.labels, batches, sizes, strict=True)
        ):
            unit, outside, sites = self.terms_and_sites(
                {**params, **values}, state["encoder"], label, batch, size, keys[i], const
            )
            if weights[i] is not None:  # rows of the minibatch that other devices hold: 0
                unit = jnp.where(weights[i], unit, 0.0)
            log_joint = log_joint + (rows / size) * jnp.sum(unit)
            if i == 0:  # global sites (priors on weights) count once, from the first regime
                log_joint = log_joint + outside * first
                captured = sites
        penalty = jnp.zeros(())
        if self.icm_pairs:
            penalty = self.icm_penalty * icm_penalty_value(self.icm_pairs, params, captured)
        return -log_joint / total + penalty, penalty

    def validation_loss(
        self, state: Mapping[str, Any], batches: list, key: jax.Array, const: Mapping
    ) -> jax.Array:
        """Negative log-likelihood per held-out row at the point estimate (posterior median)."""
        params, values = self.constrain(state)
        keys = jax.random.split(key, len(batches))
        total, rows = jnp.zeros(()), 0
        for i, (label, batch) in enumerate(zip(self.labels, batches, strict=True)):
            size = num_rows(batch)
            if size:
                unit, _, _ = self.terms_and_sites(
                    {**params, **values}, state["encoder"], label, batch, size, keys[i], const
                )
                total, rows = total + jnp.sum(unit), rows + size
        return -total / max(rows, 1)


def initial_state(objective: Objective, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The optimiser's starting state; ``batch`` (rows of the data) sizes the encoder."""
    s = objective.structure
    features = sum(math.prod(np.shape(v)[1:]) for v in batch.values())
    params = {k: jax.tree.map(biject_to(s.constraints[k]).inv, v) for k, v in s.params.items()}
    loc = {k: biject_to(s.supports[k]).inv(jnp.asarray(v)) for k, v in s.globals.items()}
    state: dict[str, Any] = {"params": params, "loc": loc, "scale": {}, "encoder": {}}
    unit_scale = math.log(math.expm1(1.0))  # softplus(b) = 1: q starts as N(0, 1)
    for site, shape in objective.local.items():
        width = math.prod(shape)
        state["encoder"][site] = {
            "w_loc": jnp.zeros((features, width)),
            "b_loc": jnp.zeros(width),
            "w_scale": jnp.zeros((features, width)),
            "b_scale": jnp.full(width, unit_scale),
        }
    if objective.bayesian:
        raw = math.log(math.expm1(_INIT_SCALE))  # softplus(raw) = the initial scale
        state["scale"] = {
            k: jnp.full(jnp.shape(v), raw, jnp.result_type(v)) for k, v in loc.items()
        }
    # Strongly typed leaves (a Python-float init is weakly typed), so the state an epoch
    # returns has the types it was given and the epoch compiles once.
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.asarray(x).dtype), state)


def _unchanged(x: np.ndarray) -> np.ndarray:
    return x


def column_stats(
    blocks: Callable[[], Iterable[Mapping[str, np.ndarray]]],
    shapes: Mapping[str, tuple[int, ...]],
    rows: int,
    total: Callable[[np.ndarray], np.ndarray] = _unchanged,
) -> dict[str, dict[str, jax.Array]]:
    """Mean and spread of each data column over all rows: the encoder's input scaling.

    Two passes (the sum, then the squared deviations from the mean), each a call of
    ``blocks()`` that yields the rows ``{site: array}`` block by block (the regimes of a
    fit, the chunks of a file), summed in float64; ``shapes`` are the per-row shapes of the
    columns to describe, ``rows`` the number of rows of all blocks (of every process), and
    ``total`` sums a partial sum over the processes that hold the other rows (this one's
    alone by default). A column that does not vary gets a spread of 1.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1.0, 2.0, 3.0, 6.0], np.float32)
    >>> halves = lambda: iter([{"x": x[:2]}, {"x": x[2:]}])
    >>> stats = column_stats(halves, {"x": ()}, rows=4)
    >>> float(stats["mean"]["x"]), float(stats["std"]["x"]) == float(np.float32(x.std()))
    (3.0, True)
    """
    # Sorted: across processes ``total`` is a collective, and the processes must pair
    # the same column in each call whatever order their users gave the columns in.
    shapes = {k: shapes[k] for k in sorted(shapes)}
    sums = {k: np.zeros(shape) for k, shape in shapes.items()}
    for block in blocks():
        for k in sums:
            sums[k] += np.asarray(block[k]).astype(np.float64).sum(axis=0)
    mean = {k: total(v) / rows for k, v in sums.items()}
    squares = {k: np.zeros(shape) for k, shape in shapes.items()}
    for block in blocks():
        for k in squares:
            squares[k] += ((np.asarray(block[k]).astype(np.float64) - mean[k]) ** 2).sum(axis=0)
    out: dict[str, dict[str, jax.Array]] = {"mean": {}, "std": {}}
    for k in shapes:
        # Zero after rounding to float32 (not before), or a tiny spread would divide by 0.
        sd = np.sqrt(total(squares[k]) / rows).astype(np.float32)
        out["mean"][k] = jnp.asarray(mean[k].astype(np.float32))
        out["std"][k] = jnp.asarray(np.where(sd > 0, sd, 1.0).astype(np.float32))
    return out


def feature_stats(train: list[dict[str, np.ndarray]]) -> dict[str, dict[str, jax.Array]]:
    """Mean and spread of each data column (the encoder's input scaling), over the rows of
    every regime (:func:`column_stats` of rows in memory).

    Examples
    --------
    >>> import numpy as np
    >>> stats = feature_stats([{"x": np.array([1.0, 3.0])}, {"x": np.array([5.0, 7.0])}])
    >>> float(stats["mean"]["x"]), round(float(stats["std"]["x"]), 4)
    (4.0, 2.2361)
    """
    shapes = {k: np.shape(v)[1:] for k, v in train[0].items()}
    return column_stats(lambda: iter(train), shapes, sum(num_rows(b) for b in train))
