"""The causal graph of a NumPyro program.

Every sample and deterministic site of a program is a node; an edge ``a -> b`` says that
the value (deterministic site) or the log-density (sample site) of ``b`` depends directly
on the value of ``a``. The dependencies come from NumPyro's provenance tracking
(:func:`numpyro.infer.inspect.get_model_relations`), so the graph is read off the program
itself and no array work is done: the program runs once under :func:`jax.eval_shape`.

Node attributes
---------------
``kind``
    ``"sample"`` (a mechanism with its own noise) or ``"deterministic"`` (noise-free).
``role``
    ``"exogenous"`` for a sample site with no parents, else ``"endogenous"``.
``observed``
    ``True`` when the program observes the site (``obs=`` or ``handlers.condition``).
``intervened``, ``intervention``
    Whether the site is intervened on, and how: ``None``, ``"hard"``, ``"shift"`` or
    ``"stochastic"``.
``distribution``
    The distribution class name (``Independent``, ``ExpandedDistribution`` and
    ``MaskedDistribution`` unwrapped), or ``"Deterministic"``.
``plates``
    The names of the plates the site is inside, outermost first.
``shape``
    The shape of the site's value.

The graph attribute ``"latent_confounders"`` lists (sorted) the exogenous unobserved
sample sites with two or more children.

Intervened programs
-------------------
An intervention handler marks the site it acts on with
``site["infer"]["scm_intervention"]`` (``"hard"``, ``"shift"`` or ``"stochastic"``). Helper
sample sites it adds, ``f"{name}.natural"`` (``infer["scm_natural_of"] == name``: the value
the mechanism would have produced) and ``f"{name}.intervention"``
(``infer["scm_intervention_of"] == name``), are folded into the intervened node: their
parents become its parents. The node's ``kind`` and ``distribution`` are those of the
``.natural`` helper where there is one (the mechanism that still acts), else those of the
``.intervention`` helper where there is one (the distribution put in its place). A hard
intervention without a natural helper cuts every incoming edge, and a hard-intervened site
is never ``observed``. Intervened nodes are always ``endogenous`` and are never latent
confounders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import networkx as nx
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.initialization import init_to_sample
from numpyro.infer.inspect import get_model_relations
from numpyro.primitives import Messenger

from scm_ppl.core.handlers import INTERVENTION_KEY, INTERVENTION_OF_KEY, NATURAL_OF_KEY
from scm_ppl.errors import GraphError

__all__ = ["graph", "topological_sites"]

_KEYS = (INTERVENTION_KEY, NATURAL_OF_KEY, INTERVENTION_OF_KEY)

_SITE_TYPES = ("sample", "deterministic")
_WRAPPERS = (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)


def distribution_name(fn: Any) -> str:
    while isinstance(fn, _WRAPPERS):
        fn = fn.base_dist
    return type(fn).__name__


def _model_name(model: Callable[..., Any]) -> str:
    """A readable name for a model, looking through NumPyro handlers."""
    if isinstance(model, Messenger) and model.fn is not None:
        return f"{type(model).__name__}({_model_name(model.fn)})"
    name = getattr(model, "__name__", None)
    return name if isinstance(name, str) else repr(model)


def _site_summaries(
    model: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Run the program once abstractly and describe its sample and deterministic sites."""
    meta: dict[str, dict[str, Any]] = {}

    def get_values() -> dict[str, Any]:
        seeded = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_sample)
        tr = handlers.trace(seeded).get_trace(*args, **kwargs)
        values = {}
        for name, site in tr.items():
            if site["type"] not in _SITE_TYPES:
                continue
            is_sample = site["type"] == "sample"
            frames = sorted(site.get("cond_indep_stack") or [], key=lambda f: f.dim or 0)
            meta[name] = {
                "kind": site["type"],
                "observed": bool(is_sample and site.get("is_observed", False)),
                "distribution": distribution_name(site["fn"]) if is_sample else "Deterministic",
                "plates": tuple(frame.name for frame in frames),
                "infer": {k: v for k, v in (site.get("infer") or {}).items() if k in _KEYS},
            }
            values[name] = site["value"]
        return values

    # eval_shape: shapes only, no array computation; metadata leaves through the closure.
    shapes = jax.eval_shape(get_values)
    for name, struct in shapes.items():
        meta[name]["shape"] = tuple(getattr(struct, "shape", ()))
    return meta


def graph(model: Callable[..., Any], /, *args: Any, **kwargs: Any) -> nx.DiGraph:
    """The causal graph of a NumPyro program.

    Parameters
    ----------
    model
        A NumPyro program (possibly wrapped in handlers such as ``condition`` or ``do``).
    *args, **kwargs
        The arguments the program is called with; they fix plate sizes and observed data.

    Returns
    -------
    networkx.DiGraph
        Nodes are the sample and deterministic sites in program order, edges point from
        parent to child; see the module docstring for the node attributes and the
        ``"latent_confounders"`` graph attribute.

    Raises
    ------
    GraphError
        If the program raises while being traced, has no sample or deterministic site, or
        its intervention helper sites name a site that does not exist.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl.core.causal_graph import graph
    >>> def model():
    ...     z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    ...     x = numpyro.sample("x", dist.Normal(z, 1.0))
    ...     numpyro.deterministic("y", 2.0 * x + z)
    >>> g = graph(model)
    >>> sorted(g.edges)
    [('x', 'y'), ('z', 'x'), ('z', 'y')]
    >>> g.nodes["z"]["role"], g.nodes["y"]["kind"]
    ('exogenous', 'deterministic')
    """
    name = _model_name(model)
    try:
        meta = _site_summaries(model, args, kwargs)
    except Exception as err:
        raise GraphError(
            f"Could not trace model {name!r} to build its graph: {type(err).__name__}: {err}. "
            "Check that the model runs when called with the arguments given to graph()."
        ) from err
    if not meta:
        raise GraphError(
            f"Model {name!r} has no sample or deterministic sites, so it has no causal "
            "graph; add numpyro.sample or numpyro.deterministic statements."
        )
    try:
        relations = get_model_relations(model, model_args=args, model_kwargs=kwargs)
    except Exception as err:
        raise GraphError(
            f"Could not track the dependencies of model {name!r}: {type(err).__name__}: {err}."
        ) from err
    parents: dict[str, list[str]] = relations["sample_sample"]

    g = nx.DiGraph()
    g.add_nodes_from(meta)
    for child in meta:
        for parent in parents.get(child, []):
            if parent in meta and parent != child:
                g.add_edge(parent, child)

    naturals, replacements = _fold_helpers(g, meta, name)
    _set_attributes(g, meta, naturals, replacements)
    return g


def _fold_helpers(
    g: nx.DiGraph, meta: dict[str, dict[str, Any]], name: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Contract intervention helper sites into the site they serve.

    Returns the maps from intervened site to its ``.natural`` and ``.intervention``
    helpers.
    """
    naturals: dict[str, str] = {}
    replacements: dict[str, str] = {}
    for helper in list(meta):
        infer = meta[helper]["infer"]
        target = infer.get(NATURAL_OF_KEY) or infer.get(INTERVENTION_OF_KEY)
        if target is None:
            continue
        if target not in meta:
            raise GraphError(
                f"Site {helper!r} of model {name!r} is an intervention helper of site "
                f"{target!r}, which the program does not have; its sites are "
                f"{sorted(meta)}."
            )
        helpers = naturals if infer.get(NATURAL_OF_KEY) is not None else replacements
        helpers[target] = helper
        for parent in list(g.predecessors(helper)):
            if parent != target:
                g.add_edge(parent, target)
        for child in list(g.successors(helper)):
            if child != target:
                g.add_edge(target, child)
        g.remove_node(helper)
    return naturals, replacements


def _set_attributes(
    g: nx.DiGraph,
    meta: dict[str, dict[str, Any]],
    naturals: dict[str, str],
    replacements: dict[str, str],
) -> None:
    for site in list(g.nodes):
        info = meta[site]
        intervention = info["infer"].get(INTERVENTION_KEY)
        kind, distribution = info["kind"], info["distribution"]
        natural = naturals.get(site)
        helper = natural if natural is not None else replacements.get(site)
        if helper is not None:
            kind, distribution = "sample", meta[helper]["distribution"]
            if distribution == "Delta":
                kind, distribution = "deterministic", "Deterministic"
        if intervention == "hard" and natural is None:
            g.remove_edges_from(list(g.in_edges(site)))
        exogenous = kind == "sample" and intervention is None and g.in_degree(site) == 0
        g.nodes[site].update(
            kind=kind,
            role="exogenous" if exogenous else "endogenous",
            observed=info["observed"] and intervention != "hard",
            intervened=intervention is not None,
            intervention=intervention,
            distribution=distribution,
            plates=info["plates"],
            shape=info["shape"],
        )
    g.graph["latent_confounders"] = sorted(
        site
        for site, data in g.nodes(data=True)
        if data["role"] == "exogenous" and not data["observed"] and g.out_degree(site) >= 2
    )


def topological_sites(g: nx.DiGraph) -> list[str]:
    """The nodes of ``g`` in a topological order, ties broken by the order of ``g.nodes``.

    For a graph built by :func:`graph` this is the program order whenever the program
    order is topological.

    Parameters
    ----------
    g
        A directed acyclic graph.

    Returns
    -------
    list of str
        Every node, each after all of its parents.

    Raises
    ------
    GraphError
        If ``g`` has a cycle.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.core.causal_graph import topological_sites
    >>> topological_sites(nx.DiGraph([("b", "c"), ("a", "c")]))
    ['b', 'a', 'c']
    """
    position = {node: i for i, node in enumerate(g.nodes)}
    try:
        return list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
    except nx.NetworkXUnfeasible as err:
        cycle = [edge[:2] for edge in nx.find_cycle(g)]
        raise GraphError(
            f"The graph has a cycle {cycle}, so its sites have no topological order; "
            "a causal graph must be acyclic."
        ) from err
