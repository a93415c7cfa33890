"""The light result every query returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax

__all__ = ["CausalResult", "LazyGroup"]

_GROUPS = ("posterior", "observed_data", "predictions")


class LazyGroup(Mapping[str, jax.Array]):
    """A read-only group of arrays built on first access, then kept.

    A query hands back what its compiled call produced; layouts the user may never look
    at (the factual world stacked next to the counterfactual ones, the abducted noise)
    are built here only when read. ``build_one(name)`` builds one array;
    ``build_all()`` builds the whole group at once (one compiled call). A ``LazyGroup``
    is a JAX pytree (flattening builds every array), so ``jax.block_until_ready`` and
    ``jax.tree.map`` see its arrays.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        build_one: Callable[[str], jax.Array] | None = None,
        build_all: Callable[[], Mapping[str, jax.Array]] | None = None,
    ) -> None:
        self._names = list(names)
        self._build_one = build_one
        self._build_all = build_all
        self._built: dict[str, jax.Array] = {}

    def __getitem__(self, name: str) -> jax.Array:
        if name not in self._built:
            if name not in self._names:
                raise KeyError(name)
            if self._build_one is not None:
                self._built[name] = self._build_one(name)
            else:
                assert self._build_all is not None  # one of the two is always given
                self._built.update(self._build_all())
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    @property
    def built(self) -> tuple[str, ...]:
        """The names built so far (reading one name builds only it, with ``build_one``)."""
        return tuple(sorted(self._built))

    def shape_of(self, name: str) -> tuple[tuple[int, ...], Any] | None:
        """``(shape, dtype)`` of a built name, ``None`` if it is not built yet."""
        value = self._built.get(name)
        return None if value is None else (tuple(value.shape), value.dtype)

    def __repr__(self) -> str:
        return f"LazyGroup({self._names}, built={sorted(self._built)})"


def _flatten(group: LazyGroup) -> tuple[list[jax.Array], tuple[str, ...]]:
    return [group[k] for k in group], tuple(group)


def _unflatten(names: Any, values: Any) -> LazyGroup:
    built = dict(zip(names, values, strict=True))
    return LazyGroup(list(names), build_one=built.__getitem__)


jax.tree_util.register_pytree_node(LazyGroup, _flatten, _unflatten)


DimsSpec = Mapping[str, Sequence[str]] | Callable[[str, tuple[int, ...]], Sequence[str]]


class CausalResult:
    """The answer to a query: the compiled call's device arrays, readable by world.

    **Reading it.** ``result.world(label)[site]`` is the way to read values: a JAX array
    shaped ``(chain, draw, *site_shape)``, exactly as the compiled call produced it (no
    copy, no stacking). Labels are ``"factual"`` and each counterfactual world's label
    (``"cf"`` by default) for :func:`~scm_ppl.counterfactual`, and each intervention's
    label (``"do"`` by default) for :func:`~scm_ppl.interventional`.

    **For ArviZ.** :meth:`to_inference_data` converts the whole result, once, to an
    ``arviz.InferenceData`` (``posterior``: latent sites and abducted noise
    ``noise.<site>``; ``observed_data``: the evidence; ``predictions``: every site, with a
    ``world`` or ``intervention`` dim after ``draw``). A ``CausalResult`` is not itself an
    ``InferenceData``; ``result.predictions`` and the other group names are shortcuts to the
    converted object's groups.

    Attributes
    ----------
    attrs
        Metadata: the abduction ``method`` used and why, the ``couplings`` assumed for
        mechanisms that do not invert, identification, the interventions and the graph
        (JSON-ready).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import counterfactual
    >>> def model(n=1):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 0.5))
    >>> res = counterfactual(model, {"x": 1.0, "y": 2.5}, {"x": 0.0}, rng_key=jax.random.key(0))
    >>> res.world("cf")["y"].shape, float(res.world("cf")["y"][0, 0, 0])  # (chain, draw, unit)
    ((1, 1, 1), 0.5)
    >>> res.attrs["method"]
    'exact'
    """

    def __init__(
        self,
        groups: Mapping[str, Mapping[str, jax.Array]],
        dims: Mapping[str, DimsSpec],
        coords: Mapping[str, Sequence[Any]],
        attrs: Mapping[str, Any],
        *,
        worlds: Mapping[str, Mapping[str, jax.Array]] | None = None,
        stacked: tuple[str, str, Sequence[str]] | None = None,
    ) -> None:
        self._worlds = dict(worlds or {})
        # (group, dim, labels): that group's arrays are the worlds' arrays stacked along
        # ``dim`` after ``draw``, so its view reads one world without stacking any.
        self._stacked = stacked
        self._views: dict[str, Any] = {}
        self._groups: dict[str, Mapping[str, jax.Array]] = {
            g: v if isinstance(v, LazyGroup) else dict(v) for g, v in groups.items()
        }
        self._dims = dict(dims)
        self._coords = dict(coords)
        self.attrs = dict(attrs)
        self._idata: Any = None

    @property
    def samples(self) -> dict[str, Mapping[str, jax.Array]]:
        """The arrays behind :meth:`to_inference_data`, by group and site (read-only
        mappings, assembled when first read; ``predictions`` stack the worlds)."""
        return self._groups

    @property
    def method(self) -> str:
        """The abduction method used (``"exact"``, ``"coupling"``, ``"nuts"``, ``"svi"``
        or ``"forward"`` for interventional sampling)."""
        return self.attrs["method"]

    def world(self, label: str) -> Mapping[str, jax.Array]:
        """One world's site values, each ``(chain, draw, ...)``, as the compiled call
        produced them: no stacking of worlds, no copy (``"factual"`` or a world label of a
        counterfactual; an intervention label of an interventional query).

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from scm_ppl import counterfactual
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
        >>> cf = counterfactual(model, {"x": 0.5, "y": 1.5}, {"x": 1.0}, rng_key=jax.random.key(0))
        >>> float(cf.world("cf")["y"][0, 0])
        2.5
        """
        if label not in self._worlds:
            raise KeyError(f"No world {label!r} in this result; it has {sorted(self._worlds)}.")
        return self._worlds[label]

    def to_dataframe(self, label: str) -> Any:
        """One world as a pandas DataFrame: one row per unit, one column per site, each
        value the mean over chains and draws (a site with no unit axis is repeated on
        every row; a site with its own axes gets one column per entry, ``"x[0]"``, ...).

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from scm_ppl import counterfactual
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
        >>> cf = counterfactual(model, {"x": 0.5, "y": 1.5}, {"x": 1.0}, rng_key=jax.random.key(0))
        >>> cf.to_dataframe("cf")["y"].tolist()
        [2.5]
        """
        import numpy as np

        from scm_ppl.core.frames import to_frame

        means = {k: np.asarray(v).mean(axis=(0, 1)) for k, v in self.world(label).items()}
        n = max((m.shape[0] for m in means.values() if m.ndim), default=1)
        return to_frame({k: m if m.ndim else np.full(n, m) for k, m in means.items()})

    def to_inference_data(self) -> Any:
        """The result as ``arviz.InferenceData`` (built once, then cached)."""
        if self._idata is None:
            from scm_ppl.convert import to_inference_data

            dims = {}
            for group, variables in self._groups.items():
                spec = self._dims.get(group, {})
                lead = 0 if group == "observed_data" else 2
                dims[group] = {
                    name: spec(name, tuple(value.shape[lead:])) if callable(spec) else spec[name]
                    for name, value in variables.items()
                }
            self._idata = to_inference_data(self._groups, dims, self._coords, self.attrs)
        return self._idata

    def group(self, name: str) -> Any:
        """One group as an ``xarray.Dataset`` whose variables are read only when indexed
        (``result.predictions`` is ``result.group("predictions")``).

        Nothing is built for the sites, worlds and groups not read:
        ``result.predictions["y"].sel(world="cf")`` builds that one world's ``y`` and views
        it (no stacking of the factual world, no abducted noise). Values equal those of
        :meth:`to_inference_data` exactly.

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from scm_ppl import counterfactual
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
        >>> cf = counterfactual(model, {"x": 0.5, "y": 1.5}, {"x": 1.0}, rng_key=jax.random.key(0))
        >>> float(cf.predictions["y"].sel(world="cf")[0, 0])
        2.5
        """
        if name not in self._views:
            if name not in self._groups:
                raise KeyError(f"No group {name!r} in this result; it has {sorted(self._groups)}.")
            from scm_ppl.convert import lazy_dataset

            self._views[name] = lazy_dataset(self._view_variables(name), self._coords, self.attrs)
        return self._views[name]

    def _view_variables(self, group: str) -> dict[str, tuple]:
        variables = self._groups[group]
        spec = self._dims.get(group, {})
        by_name = callable(spec)
        lead = [] if group == "observed_data" else ["chain", "draw"]
        stacked = self._stacked is not None and self._stacked[0] == group
        if stacked:
            labels = self._stacked[2]  # type: ignore[index]
            worlds = [self._worlds[label] for label in labels]
        else:
            worlds = [variables]
        # Any world has the shape: the last is a computed one, never the lazy factual.
        last = worlds[-1]
        out: dict[str, tuple] = {}
        for name in variables:
            if stacked:
                first = last[name]
                shape = (*first.shape[:2], len(worlds), *first.shape[2:])
                dtype, axis = first.dtype, 2
            else:
                known = variables.shape_of(name) if isinstance(variables, LazyGroup) else None
                if known is None:
                    value = variables[name]
                    known = (tuple(value.shape), value.dtype)
                shape, dtype = known
                axis = None
            dims = spec(name, tuple(shape[len(lead) :])) if by_name else spec[name]
            out[name] = ([*lead, *dims], tuple(shape), dtype, worlds, axis)
        return out

    def __getattr__(self, name: str) -> Any:
        if name in _GROUPS and name in self.__dict__.get("_groups", {}):
            return self.group(name)
        raise AttributeError(
            f"'CausalResult' has no attribute '{name}'; groups: {sorted(self._groups)}"
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{g}: {sorted(v)}" for g, v in self._groups.items())
        return f"CausalResult(method={self.attrs.get('method')!r}, {parts})"
