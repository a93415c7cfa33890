"""Learning a program's mechanisms from observational and interventional data.

The data convention
-------------------
The program is an ordinary NumPyro program whose per-unit sites live in one plate sized
by an argument: ``numpyro.plate("unit", n)`` inside ``model(n, ...)`` by default
(``plate=`` and ``size_arg=`` name others). ``data`` maps site names to arrays whose
leading axis is the unit (one row per unit, every column the same length ``N``), so
``data["x"]`` has the shape the site ``"x"`` has in ``model(n=N)``. A minibatch of
``B`` rows is scored by running ``model(n=B)`` on those rows and scaling its
log-likelihood by ``N / B``.

What is learned
---------------
* ``numpyro.param`` sites, and neural modules registered through
  ``numpyro.contrib.module``: point estimates (maximum a posteriori for every method but
  ``"nuts"``, where they keep their initial values);
* global latent sample sites (outside the unit plate: weights with priors): a MAP point
  (``method="map"``), a Gaussian variational posterior (``"svi"``, like ``AutoNormal``),
  or NUTS draws (``"nuts"``);
* local latent sample sites (in the plate, absent from the data, e.g. a latent
  confounder; name them in ``latent=``) are integrated out per unit by importance
  sampling with ``num_particles`` draws (``"map"``, ``"svi"``: an importance-weighted
  bound on the likelihood, with a linear-Gaussian proposal given the row's data learned
  alongside), or sampled (``"nuts"``).

Interventional data
-------------------
``interventions=[{...}, ...]`` lists the regimes the experimental rows came from and
``regime=`` tags every row: ``-1`` (or ``None``) for observational rows, ``k`` for rows
generated under ``interventions[k]``. Rows of regime ``k`` are scored under
``do(model, interventions[k])``, so the intervened site's own mechanism drops out of their
likelihood; all regimes share the parameters. A value ``None`` in a regime (or a regime
given as a list of site names) means "set to the values recorded in the data": the
usual randomised experiment, ``do(x = random values)``.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import IdentityTransform, biject_to
from numpyro.primitives import Messenger

from scm_ppl._cache import LRUCache
from scm_ppl._serialize import (
    FORMAT,
    FORMAT_VERSION,
    compare_fingerprints,
    fingerprint,
    pack,
    read_archive,
    unpack,
    write_archive,
)
from scm_ppl.errors import (
    DataError,
    FitError,
    InferenceWarning,
    InterventionError,
    ProgramError,
    SerializationError,
)
from scm_ppl.handlers import do
from scm_ppl.intervention import Intervention, as_intervention, describe
from scm_ppl.program import (
    ProgramInfo,
    _hashable,
    arguments_key,
    check_interventions,
    inspect_program,
)

__all__ = ["FitHistory", "FittedSCM", "fit"]

METHODS = ("map", "svi", "nuts")
_DEFAULT_PARTICLES = 16
_COMPILED = LRUCache(32)
_INIT_SCALE = 0.1

Regime = dict[str, Intervention | None]  # site -> intervention (None: the recorded values)


class FitHistory(NamedTuple):
    """The learning curve of a fit (per epoch; empty for ``method="nuts"``).

    ``losses`` is the training objective per training row (negative log joint, or
    negative ELBO, divided by the number of rows); ``validation_losses`` the negative
    log-likelihood per held-out row at the end of each epoch.
    """

    losses: np.ndarray
    validation_losses: np.ndarray
    best_epoch: int
    stopped_early: bool
    seconds: float


class _Data(NamedTuple):
    """Validated data: columns cast to their site's dtype, regime tags, regime specs."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray  # (N,) ints: -1 observational, k for interventions[k]
    regimes: list[Regime]
    latent: tuple[str, ...]
    info: ProgramInfo


class _Structure(NamedTuple):
    """What one run of the program shows: parameters, global latents, supports."""

    params: dict[str, Any]  # initial (constrained) values, pytrees
    constraints: dict[str, Any]
    globals: dict[str, Any]  # a prior draw of each global latent sample site
    supports: dict[str, Any]  # support of every sample site


# --- the fitted SCM -------------------------------------------------------------------------


class _fitted_sites(Messenger):
    """Fix MAP-estimated global latents (they become deterministic), and replace the prior
    of Bayesian ones by their fitted posterior: a diagonal Normal in unconstrained space."""

    def __init__(self, fn: Callable, fixed: Mapping, loc: Mapping, scale: Mapping) -> None:
        self.fixed, self.loc, self.scale = dict(fixed), dict(loc), dict(scale)
        super().__init__(fn)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or msg.get("is_observed"):
            return
        name = msg["name"]
        if name in self.fixed:
            msg.update(type="deterministic", value=self.fixed[name], is_observed=False)
        elif name in self.loc:
            msg["fn"] = _posterior_distribution(msg["fn"], self.loc[name], self.scale[name])


def _posterior_distribution(prior: Any, loc: jax.Array, scale: jax.Array) -> Any:
    base: Any = dist.Normal(loc, scale)
    event = max(0, jnp.ndim(loc) - len(prior.batch_shape))
    if event:
        base = base.to_event(event)
    transform = biject_to(prior.support)
    if isinstance(transform, IdentityTransform):
        return base
    return dist.TransformedDistribution(base, transform)


@dataclass(frozen=True, eq=False, repr=False)
class FittedSCM:
    """A program with learned mechanisms; every query accepts it as a program.

    Attributes
    ----------
    base_model
        The program as written.
    params
        Learned ``numpyro.param`` values (constrained), by site name.
    point
        MAP values of global latent sample sites (``method="map"``).
    posterior_loc, posterior_scale
        The fitted posterior of global latent sites (``"svi"``, ``"nuts"``): a diagonal
        Normal in the sites' unconstrained space (for ``"nuts"``, matched to the draws).
    posterior_samples
        Posterior draws of global latent sites, shaped ``(draw, *site_shape)``.
    history
        The learning curve (:class:`FitHistory`).
    settings
        The fit's settings, JSON-ready (method, plate, rows per regime, ...).

    Notes
    -----
    :attr:`model` (and calling the object itself) runs ``base_model`` with the learned
    parameters substituted; MAP global latents become deterministic sites holding their
    estimate, and Bayesian ones draw from their fitted posterior, so mechanism uncertainty
    flows into interventional and counterfactual answers.
    """

    base_model: Callable
    params: dict[str, Any]
    point: dict[str, jax.Array]
    posterior_loc: dict[str, jax.Array]
    posterior_scale: dict[str, jax.Array]
    posterior_samples: dict[str, jax.Array]
    history: FitHistory
    settings: dict[str, Any]
    _program: Callable = field(init=False)

    def __post_init__(self) -> None:
        program: Callable = handlers.substitute(self.base_model, data=dict(self.params))
        if self.point or self.posterior_loc:
            program = _fitted_sites(program, self.point, self.posterior_loc, self.posterior_scale)
        object.__setattr__(self, "_program", program)

    @property
    def model(self) -> Callable:
        """The fitted program: ``base_model`` with the learned parameters substituted."""
        return self._program

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._program(*args, **kwargs)

    @property
    def method(self) -> str:
        return self.settings["method"]

    @property
    def losses(self) -> np.ndarray:
        """Training loss per row, per epoch."""
        return self.history.losses

    @property
    def validation_losses(self) -> np.ndarray:
        """Validation loss per held-out row, per epoch (empty without a validation split)."""
        return self.history.validation_losses

    @property
    def posterior_mean(self) -> dict[str, jax.Array]:
        """Mean of the posterior draws of each global latent site (Bayesian fits)."""
        return {k: jnp.mean(v, axis=0) for k, v in self.posterior_samples.items()}

    def __repr__(self) -> str:
        name = getattr(self.base_model, "__name__", type(self.base_model).__name__)
        sites = sorted([*self.params, *self.point, *self.posterior_loc])
        return (
            f"FittedSCM({name}, method={self.method!r}, learned={sites}, "
            f"epochs={len(self.history.losses)}, rows={self.settings.get('num_rows')})"
        )

    # --- save / load ------------------------------------------------------------------------

    def save(self, path: Any) -> None:
        """Save to ``path`` (suggested suffix ``.npz``): arrays as ``.npy`` members and
        metadata as JSON in one zip archive; never pickle. The file is written next to
        ``path`` under a temporary name and renamed over it, so an interrupted save leaves
        an existing file intact. Load it with :meth:`FittedSCM.load`."""
        import scm_ppl

        groups = {
            "point": self.point,
            "loc": self.posterior_loc,
            "scale": self.posterior_scale,
            "samples": self.posterior_samples,
        }
        arrays, table = pack(self.params, groups)
        history = self.history
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "scm_ppl_version": scm_ppl.__version__,
            "settings": self.settings,
            "fingerprint": fingerprint(self.params, self._global_shapes()),
            "history": {
                "losses": [float(x) for x in history.losses],
                "validation_losses": [float(x) for x in history.validation_losses],
                "best_epoch": int(history.best_epoch),
                "stopped_early": bool(history.stopped_early),
                "seconds": float(history.seconds),
            },
            "arrays": table,
        }
        write_archive(path, arrays, metadata)

    def _global_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        shapes = {k: (tuple(np.shape(v)), str(jnp.result_type(v))) for k, v in self.point.items()}
        for k, v in self.posterior_samples.items():
            shapes[k] = (tuple(np.shape(v))[1:], str(jnp.result_type(v)))
        return shapes

    @classmethod
    def load(
        cls, path: Any, model: Callable, *, model_kwargs: Mapping[str, Any] | None = None
    ) -> FittedSCM:
        """Load a fit saved by :meth:`save`. The program is code, so pass it again: its
        parameter names, shapes and dtypes must match the file's (checked).

        ``model_kwargs`` default to the ones saved with the fit.
        """
        if not callable(model):
            raise TypeError(f"model must be the program that was fitted; got {model!r}.")
        arrays, metadata = read_archive(path)
        settings = metadata["settings"]
        if model_kwargs is None:
            if settings.get("model_kwargs") is None:
                raise SerializationError(
                    "The fit used model_kwargs that could not be saved as JSON; pass them: "
                    "FittedSCM.load(path, model, model_kwargs={...})."
                )
            model_kwargs = settings["model_kwargs"]
        structure = _discover(
            model,
            settings["plate"],
            settings["size_arg"],
            dict(model_kwargs or {}),
            jax.random.key(0),
        )
        shapes = {k: (np.shape(v), str(jnp.result_type(v))) for k, v in structure.globals.items()}
        compare_fingerprints(metadata["fingerprint"], fingerprint(structure.params, shapes))
        params, groups = unpack(arrays, metadata["arrays"], structure.params)
        h = metadata["history"]
        history = FitHistory(
            np.asarray(h["losses"], dtype=np.float64),
            np.asarray(h["validation_losses"], dtype=np.float64),
            int(h["best_epoch"]),
            bool(h["stopped_early"]),
            float(h["seconds"]),
        )
        return cls(
            model,
            params,
            groups["point"],
            groups["loc"],
            groups["scale"],
            groups["samples"],
            history,
            settings,
        )


# --- data checks ---------------------------------------------------------------------------


def _columns(data: Any) -> dict[str, np.ndarray]:
    if not isinstance(data, Mapping):
        raise DataError(
            "data must be a mapping from site name to an array with one row per unit, e.g. "
            f"{{'x': x, 'y': y}}; got {type(data).__name__}."
        )
    if not data:
        raise DataError("data hold no columns; give {site: array with one row per unit}.")
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise DataError(f"Data column names must be site names (str); got {name!r}.")
        try:
            array = np.asarray(value)
        except Exception as err:  # ragged lists and odd objects fail in many ways
            raise DataError(f"Data for '{name}' are not an array: {err}.") from err
        if not any(np.issubdtype(array.dtype, t) for t in (np.bool_, np.integer, np.floating)):
            raise DataError(
                f"Data for '{name}' have dtype {array.dtype}; expected real numbers or booleans."
            )
        if array.ndim == 0:
            raise DataError(
                f"Data for '{name}' are a scalar; a column holds one value per unit "
                "(the unit axis first)."
            )
        out[name] = array
    lengths = {name: a.shape[0] for name, a in out.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(
            f"Data columns have different numbers of rows: {lengths}; every column holds "
            "one row per unit."
        )
    if not next(iter(lengths.values())):
        raise DataError("data have no rows; give at least one unit.")
    return out


def _check_size_arg(model: Callable, size_arg: str, plate: str) -> None:
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):
        return
    params = signature.parameters
    if size_arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    raise DataError(
        f"The program takes no argument {size_arg!r} to size its {plate!r} plate; its "
        f"arguments are {list(params)}. Pass size_arg= with the one it uses."
    )


def _check_finite(columns: Mapping[str, np.ndarray]) -> None:
    for name, array in columns.items():
        if np.issubdtype(array.dtype, np.floating):
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise DataError(
                    f"Data for '{name}' hold {bad} NaN/inf value(s) out of {array.size}; drop "
                    "those rows or impute them before fitting."
                )


def _check_sites(
    info: ProgramInfo, columns: dict[str, np.ndarray], plate: str, n: int
) -> dict[str, np.ndarray]:
    per_unit = [name for name, s in info.sites.items() if plate in s.batch_dims]
    if not per_unit:
        plates = sorted({p for s in info.sites.values() for p in s.batch_dims if p})
        raise DataError(
            f"The program has no plate {plate!r} (its plates: {plates}); fit expects the "
            f"per-unit sites inside numpyro.plate({plate!r}, n). Pass plate= with its name."
        )
    unknown = [name for name in columns if name not in info.sites]
    if unknown:
        raise DataError(
            f"Data have column(s) {unknown} that are not sites of the program; the program "
            f"has sites {info.names()} (per unit: {per_unit}). Drop or rename them."
        )
    out = {}
    for name, array in columns.items():
        site = info.sites[name]
        if site.kind == "deterministic":
            raise DataError(
                f"Data for '{name}': it is a deterministic site (a noise-free mechanism), which "
                "has no likelihood to fit. Drop the column, or give the mechanism noise."
            )
        if plate not in site.batch_dims:
            raise DataError(
                f"Data for '{name}': the site is not in the {plate!r} plate, so it has no row per "
                f"unit. Data hold per-unit sites: {per_unit}."
            )
        axis = site.batch_dims.index(plate)
        if axis != 0:
            raise DataError(
                f"Site '{name}' has the {plate!r} plate on axis {axis} of its shape "
                f"{site.shape}; fit needs the unit axis first: make {plate!r} the outer plate."
            )
        if array.shape != site.shape:
            raise DataError(
                f"Data for '{name}' have shape {array.shape}, but with n = {n} rows the site "
                f"has shape {site.shape}: one row per unit, then the site's own shape "
                f"{site.shape[1:]}."
            )
        if site.discrete and np.issubdtype(array.dtype, np.floating):
            bad = int(np.count_nonzero(array != np.round(array)))
            if bad:
                raise DataError(
                    f"Data for '{name}' hold {bad} non-integer value(s), but the site is "
                    f"discrete ({site.distribution})."
                )
        out[name] = array.astype(site.dtype, copy=False)
    return out


def _labels(regime: Any, n: int, count: int) -> np.ndarray:
    if isinstance(regime, (list, tuple)):
        regime = [-1 if r is None else r for r in regime]
    try:
        labels = np.asarray(regime)
    except Exception as err:
        raise DataError(f"regime= is not an array: {err}.") from err
    if labels.shape != (n,):
        raise DataError(
            f"regime= has shape {labels.shape}; it needs one entry per row: shape ({n},)."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"regime= holds {labels.dtype} values; expected integers: -1 (or None) for "
            "observational rows, k for rows generated under interventions[k]."
        )
    bad = sorted(set(labels[(labels < -1) | (labels >= count)].tolist()))
    if bad:
        valid = f"0..{count - 1}" if count else "none: no interventions were given"
        raise DataError(
            f"regime= holds value(s) {bad[:10]}; valid are -1 (observational) and "
            f"interventions[k] for k in {valid}."
        )
    return labels.astype(np.int32)


def _regimes(
    info: ProgramInfo, columns: Mapping[str, np.ndarray], interventions: Any, regime: Any, n: int
) -> tuple[list[Regime], np.ndarray]:
    if interventions is None or (regime is None and not interventions):
        labels = np.full(n, -1, np.int32) if regime is None else _labels(regime, n, 0)
        return [], labels
    if isinstance(interventions, (Mapping, str)) or not isinstance(interventions, Sequence):
        raise InterventionError(
            "interventions= is a list with one entry per interventional regime, each "
            "{site: value} (None: the values recorded in the data) or a list of site names; "
            f"got {type(interventions).__name__}."
        )
    regimes: list[Regime] = []
    for k, entry in enumerate(interventions):
        if isinstance(entry, Mapping):
            items = dict(entry)
        elif isinstance(entry, Sequence) and not isinstance(entry, str):
            items = dict.fromkeys(entry)
        else:
            raise InterventionError(
                f"interventions[{k}] must be {{site: value}} or a list of site names; got "
                f"{type(entry).__name__}."
            )
        unknown = [s for s in items if s not in info.sites]
        if unknown:
            raise InterventionError(
                f"Unknown intervention site(s) {unknown} in interventions[{k}]; the program has "
                f"sites {info.names()}."
            )
        if not items:
            raise InterventionError(
                f"interventions[{k}] is empty; tag observational rows with regime -1 instead."
            )
        spec: Regime = {}
        for site, value in items.items():
            if value is None:
                if site not in columns:
                    raise DataError(
                        f"interventions[{k}] sets '{site}' to its recorded values, but data have "
                        f"no column '{site}'. Add it, or give the value that was set."
                    )
                spec[site] = None
                continue
            iv = as_intervention(site, value)
            if iv.kind == "shift":
                raise InterventionError(
                    f"interventions[{k}] shifts '{site}' with a callable; its rows cannot be "
                    "scored, since data record the shifted value, not the natural one. Give the "
                    f"values that were set as data: interventions[{k}] = {{'{site}': None}}."
                )
            if iv.kind == "hard":
                unit = (1, *info.sites[site].shape[1:])
                try:
                    fits = np.broadcast_shapes(np.shape(iv.value), unit) == unit
                except ValueError:
                    fits = False
                if not fits:
                    raise InterventionError(
                        f"interventions[{k}] sets '{site}' to a value of shape "
                        f"{np.shape(iv.value)}, which is not one unit's value (shape "
                        f"{unit[1:]}). Per-row values go in the data, with {{'{site}': None}}."
                    )
            spec[site] = iv
        check_interventions(info, {s: iv for s, iv in spec.items() if iv is not None})
        regimes.append(spec)
    if regime is None:
        raise DataError(
            "interventions= needs regime=: one entry per row, -1 (or None) for observational "
            "rows and k for rows generated under interventions[k]."
        )
    labels = _labels(regime, n, len(regimes))
    counts = np.bincount(labels + 1, minlength=len(regimes) + 1)
    for k, spec in enumerate(regimes):
        if not counts[k + 1]:
            raise DataError(
                f"No row is tagged with regime {k} (interventions[{k}] = {_describe(spec)}); "
                "tag its rows or drop it."
            )
        for site, iv in spec.items():
            if iv is None or iv.kind != "hard" or site not in columns:
                continue
            recorded = columns[site][labels == k]
            setting = np.broadcast_to(np.asarray(iv.value), recorded.shape)
            if not np.allclose(recorded, setting, rtol=1e-6, atol=1e-6):
                raise DataError(
                    f"Rows of regime {k} record values of '{site}' other than the value "
                    f"interventions[{k}] sets. Set it to None to use the recorded values."
                )
    return regimes, labels


def _describe(spec: Regime) -> dict[str, Any]:
    known = describe({s: iv for s, iv in spec.items() if iv is not None})
    return {s: known.get(s, {"kind": "recorded", "value": None}) for s in spec}


def _check_latent(
    info: ProgramInfo, columns: Mapping, latent: Any, plate: str, regimes: list[Regime], labels
) -> tuple[str, ...]:
    latent = (latent,) if isinstance(latent, str) else tuple(latent or ())
    per_unit = [n for n, s in info.sites.items() if plate in s.batch_dims and s.kind == "sample"]
    for name in latent:
        if name not in per_unit:
            raise DataError(
                f"latent= names '{name}', which is not a per-unit sample site; those are "
                f"{per_unit}. (Global sites outside the plate are learned as weights.)"
            )
        if name in columns:
            raise DataError(f"'{name}' is both a data column and named in latent=; pick one.")
        if info.sites[name].batch_dims.index(plate) != 0:
            raise DataError(
                f"Latent site '{name}' has the {plate!r} plate on axis "
                f"{info.sites[name].batch_dims.index(plate)}; fit needs the unit axis first."
            )
    present = sorted(set(labels.tolist()))

    def set_everywhere(site: str) -> bool:
        return all(
            k >= 0 and (iv := regimes[k].get(site)) is not None and iv.kind == "hard"
            for k in present
        )

    missing = [
        name
        for name in per_unit
        if name not in columns
        and name not in latent
        and not info.sites[name].observed
        and not set_everywhere(name)
    ]
    if missing:
        raise DataError(
            f"Data lack the per-unit sample site(s) {missing}. Give a column for each, or name "
            f"the unobserved ones in latent={missing} to integrate them out."
        )
    return latent


def _check_support(data: _Data, structure: _Structure) -> None:
    for name, array in data.columns.items():
        support = structure.supports.get(name)
        if support is None or constraints.is_dependent(support) or support is constraints.real:
            continue
        natural = np.ones(len(array), bool)
        for k, spec in enumerate(data.regimes):
            if name in spec:
                natural &= data.labels != k
        if not natural.any():
            continue
        ok = np.asarray(support(jnp.asarray(array[natural])))
        bad = int(ok.size - np.count_nonzero(ok))
        if bad:
            raise DataError(
                f"Data for '{name}' hold {bad} value(s) outside the support of its distribution "
                f"({data.info.sites[name].distribution}: {support})."
            )


def _prepare(
    model: Callable,
    data: Any,
    interventions: Any,
    regime: Any,
    latent: Any,
    plate: str,
    size_arg: str,
    kwargs: dict[str, Any],
) -> _Data:
    columns = _columns(data)
    n = len(next(iter(columns.values())))
    _check_size_arg(model, size_arg, plate)
    info = inspect_program(model, (), {size_arg: n, **kwargs})
    columns = _check_sites(info, columns, plate, n)
    _check_finite(columns)
    regimes, labels = _regimes(info, columns, interventions, regime, n)
    latent = _check_latent(info, columns, latent, plate, regimes, labels)
    return _Data(columns, labels, regimes, latent, info)


def _discover(
    model: Callable, plate: str, size_arg: str, kwargs: dict, key: jax.Array
) -> _Structure:
    """Run the program once (one unit) to find its parameters and global latent sites."""
    try:
        tr = handlers.trace(handlers.seed(model, key)).get_trace(**{size_arg: 1}, **kwargs)
    except Exception as err:
        raise ProgramError(
            f"Running the program with {size_arg}=1 raised {type(err).__name__}: {err}."
        ) from err
    params, cons, globals_, supports = {}, {}, {}, {}
    for name, site in tr.items():
        if site["type"] == "param":
            params[name] = site["value"]
            cons[name] = site["kwargs"].get("constraint", constraints.real)
        elif site["type"] == "sample":
            supports[name] = site["fn"].support
            in_plate = any(f.name == plate for f in site["cond_indep_stack"])
            if not site["is_observed"] and not in_plate:
                globals_[name] = site["value"]
    return _Structure(params, cons, globals_, supports)


# --- the objective -------------------------------------------------------------------------


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


class _Objective:
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
        structure: _Structure,
        local: dict[str, tuple[int, ...]],
        num_particles: int,
        bayesian: bool,
    ) -> None:
        self.model, self.plate, self.size_arg, self.kwargs = model, plate, size_arg, kwargs
        self.regimes, self.labels, self.structure = regimes, labels, structure
        self.num_particles, self.bayesian = num_particles, bayesian
        discrete = {k for k in local if getattr(structure.supports[k], "is_discrete", False)}
        self.prior_local = frozenset(discrete)
        self.local = {k: v for k, v in local.items() if k not in discrete}

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

    def terms(
        self,
        values: Mapping,
        encoder: Mapping,
        label: int,
        batch: Mapping,
        n: int,
        key: jax.Array,
        const: Mapping,
    ) -> tuple[jax.Array, jax.Array]:
        """Per-unit log-likelihood estimate ``(n,)`` and the log density outside the plate."""
        program = self.program(label, batch, values)
        kwargs = {self.size_arg: n, **self.kwargs}
        proposals = {}
        if self.local:
            f = self._features(batch, n, const)
            for site, e in encoder.items():
                loc = f @ e["w_loc"] + e["b_loc"]
                proposals[site] = (loc, jax.nn.softplus(f @ e["w_scale"] + e["b_scale"]))

        def once(key: jax.Array) -> tuple[jax.Array, jax.Array]:
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
            return unit - log_q, outside

        if self.num_particles == 1:
            return once(key)
        unit, outside = jax.vmap(once)(jax.random.split(key, self.num_particles))
        return jax.nn.logsumexp(unit, axis=0) - math.log(self.num_particles), outside[0]

    def constrain(self, state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.structure
        params = {
            k: jax.tree.map(biject_to(s.constraints[k]), v) for k, v in state["params"].items()
        }
        point = {k: biject_to(s.supports[k])(v) for k, v in state["loc"].items()}
        return params, point

    def loss(
        self,
        state: Mapping[str, Any],
        batches: list,
        key: jax.Array,
        const: Mapping,
        sizes: list,
        total: int,
    ) -> jax.Array:
        """Negative log joint (MAP) or negative ELBO (SVI) per row, from minibatches."""
        params, values = self.constrain(state)
        keys = jax.random.split(key, len(batches) + 1)
        log_q = jnp.zeros(())
        if self.bayesian:
            for i, (name, loc) in enumerate(sorted(state["loc"].items())):
                scale = jax.nn.softplus(state["scale"][name])
                z = loc + scale * jax.random.normal(jax.random.fold_in(keys[-1], i), loc.shape)
                transform = biject_to(self.structure.supports[name])
                values[name] = transform(z)
                log_q = log_q + jnp.sum(dist.Normal(loc, scale).log_prob(z))
                log_q = log_q - jnp.sum(transform.log_abs_det_jacobian(z, values[name]))
        log_joint = -log_q
        for i, (label, batch, (rows, size)) in enumerate(
            zip(self.labels, batches, sizes, strict=True)
        ):
            unit, outside = self.terms(
                {**params, **values}, state["encoder"], label, batch, size, keys[i], const
            )
            log_joint = log_joint + (rows / size) * jnp.sum(unit)
            if i == 0:  # global sites (priors on weights) count once, from the first regime
                log_joint = log_joint + outside
        return -log_joint / total

    def validation_loss(
        self, state: Mapping[str, Any], batches: list, key: jax.Array, const: Mapping
    ) -> jax.Array:
        """Negative log-likelihood per held-out row at the point estimate (posterior median)."""
        params, values = self.constrain(state)
        keys = jax.random.split(key, len(batches))
        total, rows = jnp.zeros(()), 0
        for i, (label, batch) in enumerate(zip(self.labels, batches, strict=True)):
            size = len(next(iter(batch.values())))
            if size:
                unit, _ = self.terms(
                    {**params, **values}, state["encoder"], label, batch, size, keys[i], const
                )
                total, rows = total + jnp.sum(unit), rows + size
        return -total / max(rows, 1)


# --- fit -----------------------------------------------------------------------------------


def _check_settings(method: str, **values: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    for name in ("num_epochs", "num_samples", "num_warmup", "num_chains"):
        value = values[name]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    for name in ("batch_size", "patience", "num_particles"):
        value = values[name]
        if value is not None and (
            not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer or None; got {value!r}.")
    lr = values["learning_rate"]
    if not isinstance(lr, (int, float, np.floating)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning_rate must be a positive finite number; got {lr!r}.")
    delta = values["min_delta"]
    if not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"min_delta must be a finite number >= 0; got {delta!r}.")
    frac = values["validation_fraction"]
    if frac is not None and not (isinstance(frac, (int, float)) and 0 <= frac < 1):
        raise ValueError(f"validation_fraction must be in [0, 1); got {frac!r}.")
    if method == "nuts" and frac:
        raise ValueError(
            "method='nuts' conditions on every row and has no learning curve; leave "
            "validation_fraction unset."
        )


def fit(
    model: Callable,
    data: Mapping[str, Any],
    *,
    method: str = "map",
    interventions: Sequence[Mapping[str, Any] | Sequence[str]] | None = None,
    regime: Any = None,
    latent: Sequence[str] | str = (),
    plate: str = "unit",
    size_arg: str = "n",
    model_kwargs: Mapping[str, Any] | None = None,
    num_epochs: int = 100,
    batch_size: int | None = 256,
    learning_rate: float = 0.01,
    optimizer: optax.GradientTransformation | None = None,
    validation_fraction: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    num_particles: int | None = None,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 1,
    rng_key: jax.Array | None = None,
    progress: bool = True,
) -> FittedSCM:
    """Learn a program's mechanisms from observational and interventional data.

    Parameters
    ----------
    model
        A NumPyro program ``model(n, ...)`` whose per-unit sites sit in
        ``numpyro.plate(plate, n)`` (see the module notes for the convention).
    data
        ``{site: array}``, one row per unit (the unit axis first), every column ``N`` rows.
        Every per-unit sample site must be given, unless named in ``latent``.
    method
        ``"map"`` (point estimates; MAP for global latent sites), ``"svi"`` (a Gaussian
        variational posterior over global latent sites) or ``"nuts"`` (posterior draws;
        small models: no minibatches, ``numpyro.param`` sites are not learned).
    interventions, regime
        Interventional regimes and the regime of each row: ``regime[i] = -1`` (or ``None``)
        for an observational row, ``k`` for a row generated under ``interventions[k]``.
        A regime is ``{site: value}`` with values as in :class:`~scm_ppl.do` (a hard value
        broadcast over units, or a distribution) or ``None`` for "the values recorded in
        the data"; a list of site names is short for all ``None``.
    latent
        Per-unit sample sites absent from the data (e.g. a latent confounder), integrated
        out per unit by importance sampling with ``num_particles`` draws (default 16; more
        for a tighter bound). Continuous ones are proposed from a Gaussian whose mean and
        scale are linear in the row's standardised data, learned alongside (exact for
        linear-Gaussian SCMs, a fair proposal for a few latent dimensions per unit);
        discrete ones from their prior. Ignored without local latents.
    plate, size_arg
        The name of the unit plate and of the argument that sizes it.
    model_kwargs
        Further (static) arguments of the program.
    num_epochs, batch_size, learning_rate, optimizer
        An epoch visits every training row once in minibatches of ``batch_size`` rows
        (``None``: all rows, one step per epoch); each regime contributes rows in
        proportion to its size. Adam with ``learning_rate`` unless an optax
        ``optimizer`` is given.
    validation_fraction
        Share of each regime's rows held out to compute a validation loss per epoch
        (default 0.1 for ``"map"``/``"svi"``).
    patience, min_delta, restore_best
        Stop when the validation loss (the training loss without a validation split) has
        not improved by ``min_delta`` for ``patience`` epochs. With a validation split,
        return the parameters of its best epoch (``restore_best``) or of the last one;
        without one, of the last (a noisy training loss would pick a lucky epoch).
    num_samples, num_warmup, num_chains
        Posterior draws kept (``"svi"``, ``"nuts"``), NUTS warmup and chains.
    rng_key
        A JAX PRNG key (default ``jax.random.key(0)``: fits are reproducible).
    progress
        Show a progress bar (tqdm).

    Returns
    -------
    FittedSCM
        Accepted by every query as a program; ``.model`` is the same program.

    Raises
    ------
    DataError
        Data that do not fit the program (missing or unknown sites, shapes, dtypes,
        NaN/inf, no rows, bad regime tags).
    InterventionError
        A regime that names unknown sites or cannot be scored.
    FitError
        The loss became NaN/inf (the fit diverged).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     w = numpyro.param("w", 0.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 0.1))
    >>> x = jax.random.normal(jax.random.key(1), (500,))
    >>> fitted = fit(model, {"x": x, "y": 2.0 * x}, batch_size=None, num_epochs=300,
    ...              learning_rate=0.05, progress=False)
    >>> round(float(fitted.params["w"]), 2)
    2.0
    """
    _check_settings(
        method,
        num_epochs=num_epochs,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=num_chains,
        batch_size=batch_size,
        patience=patience,
        num_particles=num_particles,
        learning_rate=learning_rate,
        validation_fraction=validation_fraction,
        min_delta=min_delta,
    )
    if not callable(model):
        raise TypeError(f"model must be a NumPyro program (a callable); got {model!r}.")
    kwargs = dict(model_kwargs or {})
    if size_arg in kwargs:
        raise ValueError(
            f"model_kwargs sets {size_arg!r}, which fit sets to the number of rows; drop it."
        )
    prepared = _prepare(model, data, interventions, regime, latent, plate, size_arg, kwargs)
    key = jax.random.key(0) if rng_key is None else rng_key
    init_key, split_key, run_key = jax.random.split(key, 3)
    structure = _discover(model, plate, size_arg, kwargs, init_key)
    _check_support(prepared, structure)
    if method != "nuts":
        for name, support in structure.supports.items():
            if name in structure.globals and getattr(support, "is_discrete", False):
                raise ProgramError(
                    f"Global latent site '{name}' is discrete; method={method!r} learns by "
                    "gradients. Marginalise it in the program or give it a continuous prior."
                )
    frac = (
        (0.0 if method == "nuts" else 0.1) if validation_fraction is None else validation_fraction
    )
    labels = sorted(set(prepared.labels.tolist()))  # -1 (observational) first
    train, valid = _split(prepared, labels, frac, split_key)
    particles = 1 if not prepared.latent else (num_particles or _DEFAULT_PARTICLES)
    objective = _Objective(
        model,
        plate,
        size_arg,
        kwargs,
        prepared.regimes,
        labels,
        structure,
        {site: prepared.info.sites[site].shape[1:] for site in prepared.latent},
        particles,
        bayesian=method == "svi",
    )
    json_kwargs: Any = kwargs
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError):
        json_kwargs = None
    settings = {
        "method": method,
        "plate": plate,
        "size_arg": size_arg,
        "model_kwargs": json_kwargs,
        "latent": list(prepared.latent),
        "num_rows": len(prepared.labels),
        "rows_per_regime": {str(k): int(np.sum(prepared.labels == k)) for k in labels},
        "validation_rows": sum(len(next(iter(v.values()))) for v in valid),
        "interventions": [_describe(spec) for spec in prepared.regimes],
        "learning_rate": float(learning_rate) if optimizer is None else None,
        "batch_size": batch_size,
        "num_particles": particles,
        "patience": patience,
    }
    if method == "nuts":
        return _fit_nuts(
            objective, train, settings, (num_samples, num_warmup, num_chains), run_key, progress
        )
    return _fit_gradient(
        objective,
        train,
        valid,
        settings,
        optimizer,
        (num_epochs, batch_size, learning_rate, patience, min_delta, restore_best, num_samples),
        run_key,
        progress,
    )


def _split(
    data: _Data, labels: list[int], frac: float, key: jax.Array
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    train, valid = [], []
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    for label in labels:  # on the host: a device permutation compiles anew for every N
        rows = rng.permutation(np.flatnonzero(data.labels == label))
        n_valid = min(int(frac * len(rows)), len(rows) - 1)
        train.append({s: v[rows[n_valid:]] for s, v in data.columns.items()})
        valid.append({s: v[rows[:n_valid]] for s, v in data.columns.items()})
    return train, valid


def _initial_state(objective: _Objective, features: int) -> dict[str, Any]:
    s = objective.structure
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


class _Progress:
    """A tqdm bar (or a plain status line where tqdm is missing); silent when disabled."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self.enabled, self.total, self.desc, self.bar = enabled, total, desc, None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - numpyro depends on tqdm
                return
            self.bar = tqdm(total=total, desc=desc, unit="epoch")

    def update(self, epoch: int, loss: float, valid: float | None) -> None:
        text = f"loss {loss:.4g}" + ("" if valid is None else f", validation {valid:.4g}")
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(f"\r{self.desc}: epoch {epoch}/{self.total}, {text}", end="", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _diverged(what: str, value: float, epoch: int, detail: str, settings: Mapping) -> FitError:
    lr = settings.get("learning_rate")
    hint = f"a smaller learning_rate (now {lr})" if lr is not None else "a smaller step size"
    return FitError(
        f"The {what} became {value} at epoch {epoch}{detail}: the fit diverged, so no result is "
        f"returned. Try {hint}, standardise the data, or check the program's initial "
        "parameter values and constraints."
    )


def _feature_stats(train: list[dict[str, np.ndarray]]) -> dict[str, dict[str, jax.Array]]:
    """Mean and spread of each data column (the encoder's input scaling), over all rows."""
    mean, std = {}, {}
    for site in train[0]:
        column = np.concatenate([b[site] for b in train]).astype(np.float32)
        mean[site] = jnp.asarray(column.mean(axis=0))
        std[site] = jnp.asarray(np.where(column.std(axis=0) > 0, column.std(axis=0), 1.0))
    return {"mean": mean, "std": std}


def _regime_key(spec: Regime) -> tuple:
    parts = []
    for site, iv in sorted(spec.items()):
        if iv is None:
            parts.append((site, "recorded"))
        elif iv.kind == "hard":
            value = np.asarray(iv.value)
            parts.append((site, "hard", value.shape, str(value.dtype), value.tobytes()))
        else:
            parts.append((site, iv.kind, iv.value))  # a distribution: hashed by identity
    return tuple(parts)


def _compiled_epoch(
    objective: _Objective,
    optimizer: optax.GradientTransformation,
    optimizer_key: Any,
    sizes: list[tuple[int, int]],
    steps: int,
) -> tuple[Callable, Callable]:
    """The jitted epoch (a scan over minibatch steps) and validation loss, cached on the
    fit's structure, so refits of one program (seeds, learning rates, data of the same
    shape) compile once."""
    o = objective
    key = (
        _hashable(o.model),
        o.plate,
        o.size_arg,
        arguments_key((), o.kwargs),
        tuple(_regime_key(spec) for spec in o.regimes),
        tuple(o.labels),
        o.num_particles,
        o.bayesian,
        tuple(sizes),
        steps,
        optimizer_key,
    )
    cached = _COMPILED.get(key)
    if cached is not None:
        return cached
    total = sum(n for n, _ in sizes)

    def epoch(state, opt_state, data, const, key):
        keys = jax.random.split(key, len(data) + 1)
        index = []
        for k, (n, b) in zip(keys[:-1], sizes, strict=True):
            if b >= n:
                index.append(None)  # the whole regime every step: no gather
                continue
            perm = jax.random.permutation(k, n)
            index.append(jnp.tile(perm, -(-steps * b // n))[: steps * b].reshape(steps, b))

        def step(carry, xs):
            state, opt_state = carry
            idx, step_key = xs
            batches = [
                d if i is None else {s: v[i] for s, v in d.items()}
                for d, i in zip(data, idx, strict=True)
            ]
            loss, grads = jax.value_and_grad(o.loss)(state, batches, step_key, const, sizes, total)
            updates, opt_state = optimizer.update(grads, opt_state, state)
            return (optax.apply_updates(state, updates), opt_state), loss

        xs = (index, jax.random.split(keys[-1], steps))
        (state, opt_state), losses = jax.lax.scan(step, (state, opt_state), xs)
        return state, opt_state, losses

    return _COMPILED.put(key, (jax.jit(epoch), jax.jit(o.validation_loss)))


def _fit_gradient(
    objective: _Objective,
    train: list[dict[str, np.ndarray]],
    valid: list[dict[str, np.ndarray]],
    settings: dict[str, Any],
    optimizer: optax.GradientTransformation | None,
    options: tuple,
    key: jax.Array,
    progress: bool,
) -> FittedSCM:
    num_epochs, batch_size, lr, patience, min_delta, restore_best, num_samples = options
    rows = [len(next(iter(b.values()))) for b in train]
    total = sum(rows)
    batch = total if batch_size is None else min(batch_size, total)
    steps = -(-total // batch)
    sizes = [(n, max(1, min(n, round(batch * n / total)))) for n in rows]
    train_dev = [{s: jnp.asarray(v) for s, v in b.items()} for b in train]
    valid_dev = [{s: jnp.asarray(v) for s, v in b.items()} for b in valid]
    has_valid = any(len(next(iter(b.values()))) for b in valid)
    if optimizer is None:  # the learning rate lives in the optimizer state: no recompile
        optimizer, optimizer_key = optax.inject_hyperparams(optax.adam)(learning_rate=lr), "adam"
    else:
        optimizer_key = optimizer
    run_epoch, run_valid = _compiled_epoch(objective, optimizer, optimizer_key, sizes, steps)
    const = _feature_stats(train)
    features = sum(math.prod(v.shape[1:]) for v in train[0].values())
    state = _initial_state(objective, features)
    opt_state = optimizer.init(state)
    best_state, best_value, best_epoch, wait = state, math.inf, 0, 0
    losses: list[float] = []
    valid_losses: list[float] = []
    stopped = False
    bar = _Progress(progress, num_epochs, f"fit ({settings['method']})")
    # One key for every validation pass (common random numbers): with local latents the
    # validation loss is an importance-sampling estimate, and a fresh key each epoch would
    # add noise that early stopping mistakes for progress.
    key, valid_key = jax.random.split(key)
    start = time.perf_counter()
    try:
        for epoch_number in range(1, num_epochs + 1):
            key, epoch_key = jax.random.split(key)
            state, opt_state, step_losses = run_epoch(state, opt_state, train_dev, const, epoch_key)
            valid_loss = run_valid(state, valid_dev, valid_key, const) if has_valid else None
            step_losses, valid_loss = jax.device_get((step_losses, valid_loss))
            finite = np.isfinite(step_losses)
            if not finite.all():
                first = int(np.argmin(finite))
                detail = f" (step {first + 1} of {steps})"
                raise _diverged("loss", step_losses[first], epoch_number, detail, settings)
            if valid_loss is not None and not np.isfinite(valid_loss):
                raise _diverged("validation loss", valid_loss, epoch_number, "", settings)
            losses.append(float(np.mean(step_losses)))
            if valid_loss is not None:
                valid_losses.append(float(valid_loss))
            monitored = valid_losses[-1] if valid_loss is not None else losses[-1]
            bar.update(epoch_number, losses[-1], None if valid_loss is None else float(valid_loss))
            if monitored < best_value - min_delta:
                best_state, best_value, best_epoch, wait = state, monitored, epoch_number, 0
            else:
                wait += 1
                if patience is not None and wait >= patience:
                    stopped = True
                    break
    finally:
        bar.close()
    final = best_state if restore_best and has_valid else state
    params, values = objective.constrain(final)
    history = FitHistory(
        np.asarray(losses),
        np.asarray(valid_losses),
        best_epoch,
        stopped,
        time.perf_counter() - start,
    )
    settings = {**settings, "epochs_run": len(losses), "steps_per_epoch": steps}
    if not objective.bayesian:
        return FittedSCM(objective.model, params, values, {}, {}, {}, history, settings)
    loc = dict(final["loc"])
    scale = {k: jax.nn.softplus(v) for k, v in final["scale"].items()}
    samples = {}
    for i, (name, m) in enumerate(sorted(loc.items())):
        z = m + scale[name] * jax.random.normal(jax.random.fold_in(key, i), (num_samples, *m.shape))
        samples[name] = biject_to(objective.structure.supports[name])(z)
    return FittedSCM(objective.model, params, {}, loc, scale, samples, history, settings)


def _fit_nuts(
    objective: _Objective,
    train: list[dict[str, np.ndarray]],
    settings: dict[str, Any],
    options: tuple[int, int, int],
    key: jax.Array,
    progress: bool,
) -> FittedSCM:
    from numpyro.infer import MCMC, NUTS

    num_samples, num_warmup, num_chains = options
    structure = objective.structure
    features = sum(math.prod(v.shape[1:]) for v in train[0].values())
    state = _initial_state(objective, features)
    if structure.params:
        probe = [{s: v[:256] for s, v in b.items()} for b in train]
        sizes = [(len(next(iter(b.values()))),) * 2 for b in probe]
        total = sum(s[0] for s in sizes)
        const = _feature_stats(train)
        loss = lambda state: objective.loss(state, probe, key, const, sizes, total)
        grads = jax.jit(jax.grad(loss))(state)  # one compile, not one per operation
        moving = sorted(
            k
            for k, g in grads["params"].items()
            if any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(g))
        )
        if moving:
            raise ValueError(
                f"method='nuts' samples sample sites only: the program's numpyro.param site(s) "
                f"{moving} shape the likelihood and would stay at their initial values. Learn "
                "them with method='map' or 'svi', or give them priors (sample sites)."
            )
    if not structure.globals:
        raise ValueError(
            "method='nuts' draws the program's global latent sites (priors on weights), but "
            "it has none; use method='map'."
        )
    regimes = [
        (label, {s: jnp.asarray(v) for s, v in b.items()})
        for label, b in zip(objective.labels, train, strict=True)
    ]

    def joint() -> None:
        shared: dict[str, Any] = {}
        for i, (label, batch) in enumerate(regimes):
            program = objective.program(label, batch, {})
            kwargs = {objective.size_arg: len(next(iter(batch.values()))), **objective.kwargs}
            if i == 0:  # the first regime owns the global sites; the others share them
                with handlers.trace() as tr:
                    program(**kwargs)
                shared = {k: tr[k]["value"] for k in structure.globals}
            else:
                fixed = _fitted_sites(program, shared, {}, {})
                scoped = handlers.scope(fixed, prefix=f"regime{label}", hide_types=["param"])
                scoped(**kwargs)

    mcmc = MCMC(
        NUTS(joint),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=progress,
    )
    start = time.perf_counter()
    mcmc.run(key, extra_fields=("diverging",))
    grouped = mcmc.get_samples(group_by_chain=True)
    samples = {
        k: v.reshape((-1, *v.shape[2:])) for k, v in grouped.items() if k in structure.globals
    }
    _warn_nuts(grouped, mcmc, structure)
    loc, scale = {}, {}
    for name, draws in samples.items():
        z = biject_to(structure.supports[name]).inv(draws)
        loc[name], scale[name] = jnp.mean(z, axis=0), jnp.std(z, axis=0)
    history = FitHistory(np.zeros(0), np.zeros(0), 0, False, time.perf_counter() - start)
    settings = {**settings, "num_samples": num_samples, "num_warmup": num_warmup}
    settings["num_chains"] = num_chains
    params = dict(structure.params)
    return FittedSCM(objective.model, params, {}, loc, scale, samples, history, settings)


def _warn_nuts(grouped: Mapping[str, Any], mcmc: Any, structure: _Structure) -> None:
    from numpyro.diagnostics import split_gelman_rubin

    problems = []
    divergences = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    if divergences:
        problems.append(f"{divergences} divergent transitions")
    r_hat = [
        float(np.nanmax(split_gelman_rubin(np.asarray(v))))
        for k, v in grouped.items()
        if k in structure.globals
    ]
    if r_hat and max(r_hat) > 1.05:
        problems.append(f"max r_hat {max(r_hat):.3f} > 1.05")
    if problems:
        warnings.warn(
            "The NUTS fit may be unreliable: " + "; ".join(problems) + ". Increase num_warmup "
            "or num_samples, or reparametrise the program.",
            InferenceWarning,
            stacklevel=3,
        )
