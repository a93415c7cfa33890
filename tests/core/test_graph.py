"""Tests for scm_ppl.graph: the causal graph read off a NumPyro program."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.primitives import Messenger

from scm_ppl.core.causal_graph import graph, topological_sites
from scm_ppl.errors import GraphError

N = 7


def design_model(n: int) -> None:
    """The example of DESIGN.md section 1, with a Normal in place of the flow."""
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(jnp.tanh(z), 0.5))
        y = jnp.asarray(numpyro.deterministic("y", 2.0 * x + z))
        numpyro.sample("w", dist.Normal(y - x, 0.5))


def confounded_model(n: int, t: Any = None, y: Any = None) -> None:
    """A latent u confounds treatment t and outcome y; c is an observed cause of t."""
    u = numpyro.sample("u", dist.Normal(0.0, 1.0).expand([n]).to_event(1))
    with numpyro.plate("unit", n):
        c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        t = numpyro.sample("t", dist.Bernoulli(logits=u + c), obs=t)
        numpyro.sample("y", dist.Normal(t + u, 1.0), obs=y)


class _fake_do(Messenger):
    """Produces the trace shapes the real ``do`` promises (see scm_ppl.graph's docstring)."""

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        site: str,
        how: str,
        value: Any,
        mask: Any = None,
        as_sample: bool = False,
    ) -> None:
        super().__init__(fn)
        self.site, self.how, self.value = site, how, value
        self.mask, self.as_sample = mask, as_sample

    def process_message(self, msg: Any) -> None:
        if msg.get("name") != self.site or msg["type"] not in ("sample", "deterministic"):
            return
        name, is_sample = self.site, msg["type"] == "sample"
        natural = msg["value"]
        if is_sample and (self.how == "shift" or self.mask is not None):
            natural = numpyro.sample(f"{name}.natural", msg["fn"], infer={"scm_natural_of": name})
        if self.how == "hard":
            value = self.value if self.mask is None else jnp.where(self.mask, self.value, natural)
            if self.as_sample:
                shape = msg["fn"].shape()
                msg["value"], msg["is_observed"] = jnp.broadcast_to(value, shape), True
            else:
                msg["type"], msg["value"] = "deterministic", value
        elif self.how == "shift":
            msg["type"], msg["value"] = "deterministic", self.value(natural)
        elif is_sample:  # stochastic intervention on a sample site: swap the distribution
            msg["fn"] = self.value
        else:  # stochastic intervention on a deterministic site: a helper draws the value
            infer = {"scm_intervention_of": name}
            msg["value"] = numpyro.sample(f"{name}.intervention", self.value, infer=infer)
        msg["infer"] = {**(msg.get("infer") or {}), "scm_intervention": self.how}


def test_design_model_edges_and_attributes() -> None:
    g = graph(design_model, N)
    assert list(g.nodes) == ["z", "x", "y", "w"]
    assert set(g.edges) == {("z", "x"), ("z", "y"), ("x", "y"), ("x", "w"), ("y", "w")}
    assert g.nodes["z"] == {
        "kind": "sample",
        "role": "exogenous",
        "observed": False,
        "intervened": False,
        "intervention": None,
        "distribution": "Normal",
        "plates": ("unit",),
        "shape": (N,),
    }
    assert g.nodes["x"]["role"] == "endogenous"
    assert g.nodes["y"]["kind"] == "deterministic"
    assert g.nodes["y"]["distribution"] == "Deterministic"
    assert g.nodes["y"]["role"] == "endogenous"
    assert g.nodes["w"]["plates"] == ("unit",)
    assert g.graph["latent_confounders"] == ["z"]
    assert topological_sites(g) == ["z", "x", "y", "w"]


def test_latent_confounder_and_obs() -> None:
    t, y = np.zeros(N), np.ones(N)
    g = graph(confounded_model, N, t=t, y=y)
    assert set(g.edges) == {("u", "t"), ("c", "t"), ("u", "y"), ("t", "y")}
    assert g.nodes["u"]["role"] == "exogenous"
    assert g.nodes["u"]["plates"] == ()
    assert g.nodes["u"]["shape"] == (N,)
    assert g.nodes["t"]["distribution"] == "BernoulliLogits"
    assert g.nodes["t"]["observed"] and g.nodes["y"]["observed"]
    assert not g.nodes["u"]["observed"] and not g.nodes["c"]["observed"]
    # c is exogenous but has one child only.
    assert g.nodes["c"]["role"] == "exogenous"
    assert g.graph["latent_confounders"] == ["u"]


def test_observed_root_is_not_a_latent_confounder() -> None:
    g = graph(handlers.condition(confounded_model, data={"u": np.zeros(N)}), N)
    assert g.nodes["u"]["observed"]
    assert g.graph["latent_confounders"] == []


def test_condition_marks_observed() -> None:
    conditioned = handlers.condition(design_model, data={"w": np.zeros(N), "x": np.zeros(N)})
    g = graph(conditioned, N)
    assert set(g.edges) == {("z", "x"), ("z", "y"), ("x", "y"), ("x", "w"), ("y", "w")}
    assert {n for n, obs in g.nodes(data="observed") if obs} == {"x", "w"}


def test_nested_plates_outermost_first() -> None:
    def model() -> None:
        with numpyro.plate("group", 3, dim=-2), numpyro.plate("unit", 4, dim=-1):
            numpyro.sample("a", dist.Normal(0.0, 1.0))

    g = graph(model)
    assert g.nodes["a"]["plates"] == ("group", "unit")
    assert g.nodes["a"]["shape"] == (3, 4)


@pytest.mark.parametrize("as_sample", [False, True])
def test_hard_intervention_cuts_parents(as_sample: bool) -> None:
    g = graph(_fake_do(design_model, site="x", how="hard", value=1.0, as_sample=as_sample), N)
    assert list(g.nodes) == ["z", "x", "y", "w"]
    assert set(g.edges) == {("z", "y"), ("x", "y"), ("x", "w"), ("y", "w")}
    x = g.nodes["x"]
    assert x["intervened"] and x["intervention"] == "hard"
    assert x["role"] == "endogenous" and not x["observed"]
    assert not g.nodes["z"]["intervened"] and g.nodes["z"]["intervention"] is None
    # z still drives x's children through y, but x no longer counts as one of its children.
    assert g.graph["latent_confounders"] == []


def test_hard_intervention_on_deterministic_site() -> None:
    g = graph(_fake_do(design_model, site="y", how="hard", value=0.0), N)
    assert set(g.edges) == {("z", "x"), ("x", "w"), ("y", "w")}
    assert g.nodes["y"]["intervention"] == "hard"
    assert g.nodes["y"]["kind"] == "deterministic"


def test_shift_intervention_keeps_mechanism_parents() -> None:
    g = graph(_fake_do(design_model, site="x", how="shift", value=lambda x: x + 1.0), N)
    assert "x.natural" not in g
    assert list(g.nodes) == ["z", "x", "y", "w"]
    assert set(g.edges) == {("z", "x"), ("z", "y"), ("x", "y"), ("x", "w"), ("y", "w")}
    x = g.nodes["x"]
    assert x["intervention"] == "shift" and x["intervened"]
    assert x["kind"] == "sample" and x["distribution"] == "Normal"
    assert x["plates"] == ("unit",) and x["shape"] == (N,)


def test_masked_hard_intervention_keeps_parents_for_unmasked_units() -> None:
    mask = jnp.arange(N) % 2 == 0
    g = graph(_fake_do(design_model, site="x", how="hard", value=1.0, mask=mask), N)
    assert "x.natural" not in g
    assert ("z", "x") in g.edges
    assert g.nodes["x"]["intervention"] == "hard"


def test_stochastic_intervention_on_sample_site() -> None:
    g = graph(_fake_do(design_model, site="x", how="stochastic", value=dist.Laplace(0.0, 1.0)), N)
    assert set(g.in_edges("x")) == set()
    assert g.nodes["x"]["distribution"] == "Laplace"
    assert g.nodes["x"]["intervention"] == "stochastic"
    assert g.nodes["x"]["role"] == "endogenous"


def test_stochastic_intervention_on_deterministic_site_folds_helper() -> None:
    new = dist.Normal(0.0, 1.0).expand([N])
    g = graph(_fake_do(design_model, site="y", how="stochastic", value=new), N)
    assert list(g.nodes) == ["z", "x", "y", "w"]
    assert set(g.edges) == {("z", "x"), ("x", "w"), ("y", "w")}
    assert g.nodes["y"]["kind"] == "sample"
    assert g.nodes["y"]["distribution"] == "Normal"
    assert g.nodes["y"]["intervention"] == "stochastic"


def test_helper_of_unknown_site_raises() -> None:
    def model() -> None:
        numpyro.sample("q.natural", dist.Normal(0.0, 1.0), infer={"scm_natural_of": "q"})

    with pytest.raises(GraphError, match=r"helper of site 'q'.*sites are \['q.natural'\]"):
        graph(model)


def test_failing_model_raises_graph_error_with_cause() -> None:
    def broken_model(n: int) -> None:
        numpyro.sample("a", dist.Normal(0.0, 1.0))
        raise RuntimeError("boom")

    with pytest.raises(GraphError, match=r"broken_model.*RuntimeError: boom") as info:
        graph(broken_model, 3)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value, ValueError)


def test_failing_wrapped_model_is_named_through_handlers() -> None:
    def broken_model() -> None:
        raise KeyError("k")

    with pytest.raises(GraphError, match=r"condition\(.*broken_model\)"):
        graph(handlers.condition(broken_model, data={}))


def test_empty_program_raises() -> None:
    def empty_model() -> None:
        numpyro.param("p", 1.0)

    with pytest.raises(GraphError, match=r"'.*empty_model' has no sample or deterministic"):
        graph(empty_model)


def test_graph_does_not_mutate_inputs() -> None:
    data = {"t": np.zeros(N), "y": np.ones(N)}
    before = copy.deepcopy(data)
    graph(confounded_model, N, **data)
    assert data.keys() == before.keys()
    for key, value in data.items():
        np.testing.assert_array_equal(value, before[key])


def test_topological_sites_prefers_node_order_and_rejects_cycles() -> None:
    assert topological_sites(nx.DiGraph([("b", "c"), ("a", "c"), ("c", "d")])) == [
        "b",
        "a",
        "c",
        "d",
    ]
    with pytest.raises(GraphError, match=r"cycle"):
        topological_sites(nx.DiGraph([("a", "b"), ("b", "a")]))
