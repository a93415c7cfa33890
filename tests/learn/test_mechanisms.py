"""Mechanism building blocks: shapes, parameters, exact inversion, learning, errors."""

import doctest
from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flowjax.distributions import StandardNormal, Uniform
from flowjax.flows import coupling_flow
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.optim import Adam

from scm_ppl import counterfactual, noise_view
from scm_ppl.core.noise import GUMBEL_MAX, INVERSE_CDF
from scm_ppl.errors import NoiseViewError, ProgramError
from scm_ppl.learn import flows as flows_module
from scm_ppl.learn import mechanisms as mechanisms_module
from scm_ppl.learn.mechanisms import (
    FLOW_KINDS,
    FlowDistribution,
    additive_noise,
    bernoulli,
    categorical,
    flow,
    location_scale,
)

KEY = jax.random.key(0)
SMALL = {"flow_layers": 2, "nn_width": 8}


def sites(model, *args, **kwargs):
    """Site metadata from one abstract run (no array work): type, shape, plates, noise."""
    out = {}

    def run():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        for name, site in tr.items():
            if site["type"] not in ("sample", "param"):
                continue
            if site["type"] == "param":
                out[name] = SimpleNamespace(type="param")
                continue
            view = noise_view(site["fn"])
            out[name] = SimpleNamespace(
                type="sample",
                shape=tuple(jnp.shape(site["value"])),
                fn=type(site["fn"]).__name__,
                plates=tuple(f.name for f in site["cond_indep_stack"]),
                unscaled=site["scale"] is None,
                invertible=view.invertible,
                coupling=view.coupling,
            )
        return 0

    jax.eval_shape(run)
    return out


def all_mechanisms(n, prior_scale=None):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        y = additive_noise("y", x[..., None], hidden=(8,), prior_scale=prior_scale)
        z = location_scale("z", [x, y], hidden=(8, 4))
        flow("w", [x, z], kind="spline", **SMALL)
        flow("v", [x, z], kind="coupling", dim=3, **SMALL)
        flow("r", None, kind="maf", **SMALL)
        c = categorical("c", [x], 3, hidden=(8,))
        bernoulli("b", [x, c], hidden=(8,))


# --- shapes, parameters, Predictive -------------------------------------------------------


def test_sites_shapes_params_and_noise_views():
    info = sites(all_mechanisms, 5)
    params = sorted(k for k, s in info.items() if s.type == "param")
    assert params == [
        "b.net$params",
        "c.net$params",
        "r.flow$params",
        "v.flow$params",
        "w.flow$params",
        "y.net$params",
        "y.scale",
        "z.net$params",
    ]
    shapes = {k: s.shape for k, s in info.items() if s.type == "sample"}
    assert shapes == {
        "x": (5,),
        "y": (5,),
        "z": (5,),
        "w": (5,),
        "v": (5, 3),
        "r": (5,),
        "c": (5,),
        "b": (5,),
    }
    for name in "yzwvr":
        assert info[name].invertible, name
        assert info[name].plates == ("unit",)
    assert info["w"].fn == "FlowDistribution"
    assert info["r"].fn == "ExpandedDistribution"  # an unconditional flow, expanded by the plate
    assert info["c"].coupling == GUMBEL_MAX
    assert info["b"].coupling == INVERSE_CDF


def test_predictive_runs_every_mechanism():
    draws = Predictive(all_mechanisms, num_samples=3)(KEY, 4)
    for name in "xyzwrcb":
        assert draws[name].shape == (3, 4), name
    assert draws["v"].shape == (3, 4, 3)
    assert set(np.unique(np.asarray(draws["c"]))) <= {0, 1, 2}
    assert all(np.isfinite(np.asarray(draws[k])).all() for k in "yzwvr")


def test_initial_weights_come_from_key_and_are_reproducible():
    def model(key):
        with numpyro.plate("unit", 3):
            additive_noise("y", jnp.ones((3, 2)), hidden=(4,), key=key)

    def weights(key):
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(key)
        return tr["y.net$params"]["value"].layers[0].weight

    np.testing.assert_array_equal(weights(3), weights(jax.random.key(3)))
    np.testing.assert_array_equal(weights(3), weights(jax.random.PRNGKey(3)))  # raw uint32
    np.testing.assert_array_equal(weights(None), weights(None))
    assert not np.allclose(weights(3), weights(4))


# --- Bayesian mechanisms ------------------------------------------------------------------


def test_bayesian_weights_are_global_sample_sites():
    info = sites(all_mechanisms, 5, prior_scale=1.0)
    weights = {k: s for k, s in info.items() if k.startswith("y.net/")}
    assert set(weights) == {
        "y.net/layers[0].weight",
        "y.net/layers[0].bias",
        "y.net/layers[1].weight",
        "y.net/layers[1].bias",
    }
    assert weights["y.net/layers[0].weight"].shape == (8, 1)  # once, not once per unit
    assert all(s.type == "sample" and s.plates == () for s in weights.values())
    assert info["y.scale"].type == "sample" and info["y.scale"].shape == ()


def test_bayesian_weights_ignore_plate_subsampling():
    def model():
        with numpyro.plate("unit", 100, subsample_size=10):
            additive_noise("y", jnp.ones((10, 1)), hidden=(4,), prior_scale=1.0)

    info = sites(model)
    assert info["y.net/layers[0].weight"].unscaled  # a global prior is not rescaled
    assert info["y.net/layers[0].weight"].plates == ()
    assert info["y"].plates == ("unit",) and not info["y"].unscaled


def test_bayesian_predictive_draws_different_functions():
    xs = jnp.linspace(-2.0, 2.0, 7)

    def model():
        with numpyro.plate("unit", xs.shape[0]):
            additive_noise("y", xs[..., None], hidden=(8,), prior_scale=1.0, noise_scale=1e-3)

    draws = Predictive(model, num_samples=4)(KEY)
    assert draws["y.net/layers[0].weight"].shape == (4, 8, 1)
    y = np.asarray(draws["y"])
    # Two draws of the mechanism differ by far more than the noise (1e-3) allows.
    assert np.min(np.ptp(y, axis=0)) > 0.05


# --- flows: exact inversion ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "dim", "conditional"),
    [("maf", 1, True), ("maf", 1, False), ("coupling", 3, True), ("spline", 1, True)],
)
def test_flow_noise_view_round_trip(kind, dim, conditional):
    n = 6
    parents = jnp.stack([jnp.linspace(-1.0, 1.0, n), jnp.linspace(0.5, -0.5, n)], -1)

    def model():
        with numpyro.plate("unit", n):
            flow("y", parents if conditional else None, kind=kind, dim=dim, **SMALL)

    @jax.jit
    def round_trip(key):
        tr = handlers.trace(handlers.seed(model, key)).get_trace()
        x, view = tr["y"]["value"], noise_view(tr["y"]["fn"])
        u = view.inverse(x)
        u_star = jax.random.normal(key, u.shape)
        return x, u, view.forward(u), view.inverse(view.forward(u_star)), u_star

    x, u, x_again, u_star_again, u_star = round_trip(KEY)
    shape = (n,) if dim == 1 else (n, dim)
    assert x.shape == u.shape == shape
    np.testing.assert_allclose(x_again, x, atol=1e-5)
    np.testing.assert_allclose(u_star_again, u_star, atol=1e-4)


def test_scalar_flow_density_integrates_to_one():
    def model():
        flow("y", jnp.array([0.3, -0.7]), kind="spline", **SMALL)

    grid = jnp.linspace(-12.0, 12.0, 4001)

    @jax.jit
    def density():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace()
        return jnp.exp(tr["y"]["fn"].log_prob(grid))

    mass = float(jnp.trapezoid(density(), grid))
    assert abs(mass - 1.0) < 1e-3


def _flow_model(n):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        flow("y", [x, z], kind="spline", **SMALL)


def test_flow_counterfactual_is_exact_and_matches_hand_inversion():
    n = 6
    ev = {
        "x": jnp.linspace(-1.0, 1.0, n),
        "z": jnp.linspace(0.5, -0.5, n),
        "y": jnp.linspace(-2.0, 2.0, n),
    }
    x_cf = ev["x"] + 1.0
    cf = counterfactual(_flow_model, ev, {"x": x_cf}, rng_key=KEY, model_kwargs={"n": n})
    assert cf.method == "exact" and cf.attrs["exact"]
    got = np.asarray(cf.samples["predictions"]["y"][0, 0, 1])

    # By hand: the flow with its (initial) parameters, inverted at the factual parents
    # and re-applied at the counterfactual ones, through FlowJAX's own bijection.
    tr = handlers.trace(handlers.seed(handlers.condition(_flow_model, ev), 0)).get_trace(n)
    bijection = tr["y"]["fn"].flow.bijection

    @jax.jit
    def by_hand(y, cond, cond_cf):
        u = jax.vmap(bijection.inverse)(y[:, None], cond)
        return jax.vmap(bijection.transform)(u, cond_cf)[:, 0]

    expected = by_hand(ev["y"], jnp.stack([ev["x"], ev["z"]], -1), jnp.stack([x_cf, ev["z"]], -1))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, np.asarray(ev["y"]), atol=1e-2)  # the intervention acts


# --- additive noise: exact counterfactual and learning ---------------------------------------


def _anm_model(n):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        additive_noise("y", x[..., None], hidden=(8,), key=7)


def test_additive_noise_counterfactual_matches_hand_computation():
    n = 8
    ev = {"x": jnp.linspace(-2.0, 2.0, n), "y": jnp.linspace(1.0, -1.0, n)}
    x_cf = ev["x"] * 0.5 - 1.0
    cf = counterfactual(_anm_model, ev, {"x": x_cf}, rng_key=KEY, model_kwargs={"n": n})
    assert cf.method == "exact" and cf.attrs["exact"]

    # The documented network: an Equinox MLP from key 7, registered as "y.net$params".
    f = eqx.nn.MLP(1, 1, 8, 1, activation=jax.nn.silu, key=jax.random.key(7))
    tr = handlers.trace(handlers.seed(_anm_model, 0)).get_trace(n)
    registered = tr["y.net$params"]["value"]
    for got_w, want_w in zip(
        jax.tree.leaves(registered), jax.tree.leaves(eqx.filter(f, eqx.is_array)), strict=True
    ):
        np.testing.assert_array_equal(got_w, want_w)

    def fx(v):
        return jax.vmap(f)(v[:, None])[:, 0]

    expected = fx(x_cf) + (ev["y"] - fx(ev["x"]))
    np.testing.assert_allclose(cf.samples["predictions"]["y"][0, 0, 1], expected, atol=1e-5)


def test_location_scale_counterfactual_is_exact():
    n = 5

    def model():
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            location_scale("y", x[..., None], hidden=(8,), noise="laplace")

    ev = {"x": jnp.linspace(-1.0, 1.0, n), "y": jnp.linspace(0.0, 2.0, n)}
    x_cf = -ev["x"]
    cf = counterfactual(model, ev, {"x": x_cf}, rng_key=KEY)
    assert cf.method == "exact"

    def loc_scale(x):
        tr = handlers.trace(handlers.seed(handlers.condition(model, {**ev, "x": x}), 0))
        fn = tr.get_trace()["y"]["fn"]
        assert isinstance(fn, dist.Laplace)
        return fn.loc, fn.scale

    (mu, sd), (mu_cf, sd_cf) = loc_scale(ev["x"]), loc_scale(x_cf)
    expected = mu_cf + sd_cf * (ev["y"] - mu) / sd
    np.testing.assert_allclose(cf.samples["predictions"]["y"][0, 0, 1], expected, atol=1e-5)


def test_svi_learns_an_additive_noise_mechanism():
    # y = sin(2x) + 0.1 u on [-2, 2]. The noise variance is 0.01; 256 rows pin a smooth
    # mechanism down to a small fraction of it (about 3e-4 here), so a held-out error
    # of the learned f against sin(2x) below 0.005 (half the noise variance) holds with a
    # wide margin after 300 Adam steps, and the learned noise scale is close to 0.1.
    kx, ku = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(kx, (256,), minval=-2.0, maxval=2.0)
    y = jnp.sin(2.0 * x) + 0.1 * jax.random.normal(ku, x.shape)

    def model(x, y=None):
        with numpyro.plate("unit", x.shape[0]):
            return additive_noise("y", x[..., None], hidden=(16, 16), obs=y)

    svi = SVI(model, lambda x, y=None: None, Adam(0.03), Trace_ELBO())
    result = svi.run(jax.random.key(2), 300, x, y, progress_bar=False)
    x_test = jnp.linspace(-1.9, 1.9, 200)
    fitted_model = handlers.substitute(handlers.seed(model, 0), result.params)
    tr = handlers.trace(fitted_model).get_trace(x_test)
    fitted = noise_view(tr["y"]["fn"]).forward(jnp.zeros_like(x_test))  # f(x) at u = 0
    mse = float(jnp.mean((fitted - jnp.sin(2.0 * x_test)) ** 2))
    assert mse < 0.005, mse
    assert 0.08 < float(result.params["y.scale"]) < 0.12


# --- errors -----------------------------------------------------------------------------------


def _run(model, *args, **kwargs):
    return handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)


def _in_plate(mechanism, n=4):
    def model():
        with numpyro.plate("unit", n):
            mechanism()

    return model


@pytest.mark.parametrize(
    ("mechanism", "match"),
    [
        (lambda: additive_noise("y", jnp.ones(4)), r"read as ONE unit with 4 parents"),
        (lambda: additive_noise("y", jnp.ones(())), r"expected \(\.\.\., p\)"),
        (lambda: additive_noise("y", jnp.ones((3, 2))), r"plate 'unit' \(dim -1\) has size 4"),
        (lambda: additive_noise("y", []), r"empty list"),
        (lambda: additive_noise("y", [jnp.ones(4), jnp.ones(3)]), r"do not broadcast"),
        (lambda: additive_noise("y", jnp.ones((4, 1)), noise="t"), r"one of \['normal', "),
        (lambda: additive_noise("y", jnp.ones((4, 1)), noise_scale=0.0), r"positive number"),
        (lambda: additive_noise("y", jnp.ones((4, 1)), hidden="wide"), r"layer widths"),
        (lambda: additive_noise("y", jnp.ones((4, 1)), key="seed"), r"int seed or a JAX"),
        (lambda: additive_noise("y", jnp.ones((4, 1)), key=jnp.ones(2)), r"got ArrayImpl"),
        (lambda: additive_noise("", jnp.ones((4, 1))), r"non-empty str"),
        (lambda: location_scale("y", jnp.ones((4, 1)), min_scale=-1.0), r"min_scale"),
        (lambda: flow("y", jnp.ones((4, 1)), kind="nice"), r"\['maf', 'coupling', 'spline'\]"),
        (lambda: flow("y", jnp.ones((4, 1)), dim=0), r"dim of 'y' must be an integer >= 1"),
        (lambda: categorical("c", jnp.ones((4, 1)), 1), r"num_classes .* >= 2"),
        (lambda: bernoulli("b", jnp.ones((4, 1)), prior_scale=-1.0), r"prior_scale"),
    ],
)
def test_bad_arguments_raise_teaching_errors(mechanism, match):
    with pytest.raises(ProgramError, match=match):
        _run(_in_plate(mechanism))


def test_bad_parents_are_reported_before_compiling_a_query():
    def model():
        with numpyro.plate("unit", 3):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            additive_noise("y", x)  # one parent per unit needs x[..., None]

    with pytest.raises(ProgramError, match=r"pass x\[\.\.\., None\]"):
        counterfactual(model, {"x": jnp.zeros(3), "y": jnp.zeros(3)}, {"x": 1.0}, rng_key=KEY)


def test_flow_distribution_checks_its_condition_and_flow():
    f = coupling_flow(KEY, base_dist=StandardNormal((3,)), cond_dim=2, flow_layers=2, nn_width=8)
    with pytest.raises(ProgramError, match=r"no condition was given"):
        FlowDistribution(f)
    with pytest.raises(ProgramError, match=r"expects \(\.\.\., \*\(2,\)\)"):
        FlowDistribution(f, jnp.ones((4, 3)))
    with pytest.raises(ProgramError, match=r"this flow has shape \(3,\)"):
        FlowDistribution(f, jnp.ones((4, 2)), squeeze=True)
    with pytest.raises(ProgramError, match=r"FlowJAX distribution over vectors"):
        FlowDistribution(dist.Normal(0.0, 1.0))  # type: ignore[arg-type]
    d = FlowDistribution(f, jnp.ones((4, 2)))
    assert d.batch_shape == (4,) and d.event_shape == (3,)


def test_flow_distribution_without_standard_normal_base_has_no_noise_view():
    d = FlowDistribution(Uniform(jnp.zeros(2), jnp.ones(2)))
    assert d.event_shape == (2,)
    with pytest.raises(NoiseViewError, match=r"its base is _StandardUniform"):
        noise_view(d)
    with pytest.raises(NoiseViewError, match=r"\(StandardNormal\) is not a transformed"):
        noise_view(FlowDistribution(StandardNormal((2,))))


def test_kinds_are_listed():
    assert FLOW_KINDS == ("maf", "coupling", "spline")
    assert mechanisms_module.NOISE_FAMILIES.keys() == {"normal", "laplace", "logistic"}


def test_doctests():
    for module in (mechanisms_module, flows_module):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
