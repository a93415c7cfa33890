"""A fitted SCM (:class:`FittedSCM`): the program as written with its learned values
substituted (:class:`fitted_sites`), its learning curve and save/load (through
:mod:`scm_ppl.learn.serialize`); what ``fit`` returns and every query takes as a program.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.transforms import IdentityTransform, biject_to
from numpyro.primitives import Messenger

from scm_ppl.core.inference import ProgramParts
from scm_ppl.core.posterior_draws import FIT_POSTERIOR, PosteriorDraws
from scm_ppl.core.validate import check_callable
from scm_ppl.errors import SerializationError
from scm_ppl.learn.data import discover
from scm_ppl.learn.objective import FitEstimate
from scm_ppl.learn.serialize import (
    compare_fingerprints,
    fingerprint,
    global_shapes,
    read_archive,
    read_history,
    unpack,
    write_fit,
)

__all__ = ["FitHistory", "FittedSCM", "fitted_scm", "fitted_sites"]


class fitted_sites(Messenger):
    """Fix MAP-estimated global latents (they become deterministic), and replace the prior
    of Bayesian ones by their fitted posterior: the draws themselves where given (NUTS),
    else a diagonal Normal in unconstrained space (SVI). Bayesian sites are marked, so
    abduction draws them as they are instead of conditioning them again.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> def model():
    ...     numpyro.sample("beta", dist.Normal(0.0, 1.0))
    >>> tr = handlers.trace(fitted_sites(model, {"beta": 0.7}, {}, {})).get_trace()
    >>> tr["beta"]["type"], tr["beta"]["value"]
    ('deterministic', 0.7)
    """

    def __init__(
        self,
        fn: Callable,
        fixed: Mapping,
        loc: Mapping,
        scale: Mapping,
        draws: Mapping | None = None,
    ) -> None:
        self.fixed, self.loc, self.scale = dict(fixed), dict(loc), dict(scale)
        self.draws = dict(draws or {})
        self._draw: jax.Array | None = None
        self._carrier: dict[str, Any] | None = None
        super().__init__(fn)

    def __enter__(self) -> Any:
        self._draw = None  # the index of the posterior draw this run of the program uses
        self._carrier = None  # the message of the site that carries it
        return super().__enter__()

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or msg.get("is_observed"):
            return
        name = msg["name"]
        if name in self.fixed:
            msg.update(type="deterministic", value=self.fixed[name], is_observed=False)
        elif name in self.draws and self._draw is not None:
            msg.update(type="deterministic", value=self.draws[name][self._draw], is_observed=False)
        elif name in self.draws:
            self._carrier = msg
            msg["fn"] = PosteriorDraws(self.draws[name])
            msg["infer"] = {**(msg.get("infer") or {}), FIT_POSTERIOR: True}
        elif name in self.loc:
            msg["fn"] = _posterior_distribution(msg["fn"], self.loc[name], self.scale[name])
            msg["infer"] = {**(msg.get("infer") or {}), FIT_POSTERIOR: True}

    def postprocess_message(self, msg: dict[str, Any]) -> None:
        # The message itself, not its name or type: outer handlers (world prefixes, noise
        # replay) may have renamed it or made it deterministic by now.
        if self._draw is None and msg is self._carrier:
            # One draw of *all* the weights per run, or the mechanisms would mix draws: the
            # later sites take the draw whose value the first one holds (draws of
            # continuous weights are distinct, so the match is exact).
            self._draw = msg["fn"].index_of(msg["value"])


def _posterior_distribution(prior: Any, loc: jax.Array, scale: jax.Array) -> Any:
    base: Any = dist.Normal(loc, scale)
    event = max(0, jnp.ndim(loc) - len(prior.batch_shape))
    if event:
        base = base.to_event(event)
    transform = biject_to(prior.support)
    if isinstance(transform, IdentityTransform):
        return base
    return dist.TransformedDistribution(base, transform)


class FitHistory(NamedTuple):
    """The learning curve of a fit (per epoch; empty for ``method="nuts"``).

    ``losses`` is the training objective per training row (negative log joint, or
    negative ELBO, divided by the number of rows); ``validation_losses`` the negative
    log-likelihood per held-out row at the end of each epoch. With ``icm_penalty``,
    ``losses`` hold the data term alone and ``penalties`` the penalty ``λ Σ (log ρ)²``
    per epoch (the optimised objective is their sum); ``penalties`` is empty otherwise.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit
    >>> def model(n):
    ...     w = numpyro.param("w", 0.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 0.1))
    >>> x = jax.random.normal(jax.random.key(1), (200,))
    >>> fitted = fit(model, {"x": x, "y": 2.0 * x}, batch_size=None, num_epochs=200,
    ...              learning_rate=0.05, validation_fraction=0.0, progress=False)
    >>> h = fitted.history
    >>> h.losses.shape, bool(h.losses[-1] < h.losses[0]), h.stopped_early
    ((200,), True, False)
    """

    losses: np.ndarray
    validation_losses: np.ndarray
    best_epoch: int
    stopped_early: bool
    seconds: float
    penalties: np.ndarray = np.zeros(0)


class _FittedValues(NamedTuple):
    """What a fit learned, as the fitted program uses it (``draws``: NUTS fits only)."""

    params: Mapping[str, Any]
    point: Mapping[str, Any]
    loc: Mapping[str, Any]
    scale: Mapping[str, Any]
    draws: Mapping[str, Any] | None


def _fitted_program(base_model: Callable, values: _FittedValues) -> Callable:
    """``base_model`` with the learned values substituted: MAP global latents become
    deterministic, Bayesian ones draw from their fitted posterior."""
    program: Callable = handlers.substitute(base_model, data=dict(values.params))
    if values.point or values.loc:
        program = fitted_sites(
            program, fixed=values.point, loc=values.loc, scale=values.scale, draws=values.draws
        )
    return program


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

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit
    >>> def model(n):
    ...     w = numpyro.param("w", 0.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 0.1))
    >>> x = jax.random.normal(jax.random.key(1), (200,))
    >>> fitted = fit(model, {"x": x, "y": 2.0 * x}, batch_size=None, num_epochs=200,
    ...              learning_rate=0.05, validation_fraction=0.0, progress=False)
    >>> round(float(fitted.params["w"]), 2), fitted.settings["method"]
    (2.0, 'map')
    >>> from scm_ppl import counterfactual     # a fitted SCM is a program to every query
    >>> res = counterfactual(fitted, {"x": 1.0, "y": 2.1}, {"x": 0.0},
    ...                      model_kwargs={"n": 1}, rng_key=jax.random.key(0))
    >>> round(float(res.world("cf")["y"][0, 0, 0]), 2)   # the unit's noise (+0.1) kept
    0.1
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
    _parts: list = field(init=False)  # [] until _program_parts is first asked, then [parts]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_program", _fitted_program(self.base_model, self._values()))
        object.__setattr__(self, "_parts", [])

    def _values(self) -> _FittedValues:
        draws = self.posterior_samples if self.settings.get("method") == "nuts" else None
        return _FittedValues(
            params=self.params,
            point=self.point,
            loc=self.posterior_loc,
            scale=self.posterior_scale,
            draws=draws,
        )

    def _program_parts(self) -> ProgramParts | None:
        """The program apart from its learned arrays, so that queries on fits of one
        program with arrays of the same shapes share one compiled function (see
        :class:`~scm_ppl.core.inference.ProgramParts`); ``None`` when what is not an array
        (Python numbers, the static fields of Equinox modules) cannot be hashed. Worked
        out once: like :attr:`model`, it holds the values the fit was made with."""
        if not self._parts:
            self._parts.append(self._split_program())
        return self._parts[0]

    def _split_program(self) -> ProgramParts | None:
        dynamic, static = eqx.partition(self._values(), eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(dynamic)
        static_leaves, static_def = jax.tree_util.tree_flatten(static)
        # A leaf's type too: 1 == 1.0 == True, but they make programs of different dtypes.
        statics = tuple((type(x), x) for x in static_leaves)
        key = (FittedSCM, self.base_model, treedef, static_def, statics)
        try:
            hash(key)
        except TypeError:
            return None
        base_model = self.base_model

        def build(values: list) -> Callable:
            dynamic = jax.tree_util.tree_unflatten(treedef, values)
            return _fitted_program(base_model, eqx.combine(dynamic, static))

        return ProgramParts(key, leaves, build)

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
        groups = {
            "point": self.point,
            "loc": self.posterior_loc,
            "scale": self.posterior_scale,
            "samples": self.posterior_samples,
        }
        write_fit(path, self.params, groups, self.settings, self.history._asdict())

    @classmethod
    def load(
        cls, path: Any, model: Callable, *, model_kwargs: Mapping[str, Any] | None = None
    ) -> FittedSCM:
        """Load a fit saved by :meth:`save`. The program is code, so pass it again: its
        parameter names, shapes and dtypes must match the file's (checked).

        ``model_kwargs`` default to the ones saved with the fit.
        """
        check_callable("model", model, what="the program that was fitted")
        arrays, metadata = read_archive(path)
        settings = metadata["settings"]
        if model_kwargs is None:
            if settings.get("model_kwargs") is None:
                raise SerializationError(
                    "The fit used model_kwargs that could not be saved as JSON; pass them: "
                    "FittedSCM.load(path, model, model_kwargs={...})."
                )
            model_kwargs = settings["model_kwargs"]
        structure = discover(
            model,
            settings["plate"],
            settings["size_arg"],
            dict(model_kwargs or {}),
            jax.random.key(0),
        )
        shapes = global_shapes(structure.globals)
        compare_fingerprints(metadata["fingerprint"], fingerprint(structure.params, shapes))
        params, groups = unpack(arrays, metadata["arrays"], structure.params)
        history = FitHistory(**read_history(metadata["history"]))
        return cls(
            base_model=model,
            params=params,
            point=groups["point"],
            posterior_loc=groups["loc"],
            posterior_scale=groups["scale"],
            posterior_samples=groups["samples"],
            history=history,
            settings=settings,
        )


def fitted_scm(model: Callable, e: FitEstimate) -> FittedSCM:
    """The :class:`FittedSCM` of ``model`` from what a fitting method returned.

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> from scm_ppl.learn.objective import FitEstimate
    >>> def model(n):
    ...     w = numpyro.param("w", 0.0)
    ...     with numpyro.plate("unit", n):
    ...         numpyro.sample("y", dist.Normal(w, 1.0))
    >>> e = FitEstimate(params={"w": 2.0}, point={}, loc={}, scale={}, samples={},
    ...                 losses=np.zeros(0), validation_losses=np.zeros(0), best_epoch=0,
    ...                 stopped_early=False, seconds=0.0, settings={"method": "map"})
    >>> fitted_scm(model, e)
    FittedSCM(model, method='map', learned=['w'], epochs=0, rows=None)
    """
    history = FitHistory(
        losses=e.losses,
        validation_losses=e.validation_losses,
        best_epoch=e.best_epoch,
        stopped_early=e.stopped_early,
        seconds=e.seconds,
        penalties=e.penalties,
    )
    return FittedSCM(
        base_model=model,
        params=e.params,
        point=e.point,
        posterior_loc=e.loc,
        posterior_scale=e.scale,
        posterior_samples=e.samples,
        history=history,
        settings=e.settings,
    )
