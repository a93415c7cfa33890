"""Refit ensembles and posterior contraction (``scm_ppl.refit_ensemble``,
``scm_ppl.contraction``) against known answers, and their plots."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from models import confounded_linear as cl
from models import hidden_mediator as hm
from scm_ppl.errors import DataError, IdentifiabilityError, SettingsError
from scm_ppl.howfar.fisher_report import contraction, refit_ensemble

matplotlib.use("Agg")
import matplotlib.pyplot as plt

X, Y, X_PRIME = 1.0, 0.5, 0.0  # the unit asked about: observed (x, y), counterfactual x'


@pytest.fixture(scope="module")
def bow_ensemble():
    data = cl.sample_bow(1000, seed=0)
    return refit_ensemble(
        cl.bow_model,
        data,
        8,
        rng_key=jax.random.key(1),
        latent="U",
        num_epochs=200,
        learning_rate=0.05,
        init_scale=1.0,
    )


@pytest.fixture(scope="module")
def direct_ensemble():
    data = hm.sample(1000, seed=4)
    return refit_ensemble(
        hm.direct_model, data, 6, rng_key=jax.random.key(2), num_epochs=300, learning_rate=0.05
    )


@pytest.mark.slow
def test_tied_refits_of_a_latent_confounder_disagree_on_a_unit_counterfactual(bow_ensemble):
    """Bow graph, ``U`` latent: 5 parameters, 3 observed moments, so a 2-dimensional set
    of fits explains the data equally well, and ``Y_{x'} = y + beta (x' - x)`` moves with
    ``beta`` along it. The counterfactual is a closed form of the parameters: its
    Monte-Carlo error is 0, so any spread is disagreement between the fits."""
    ens = bow_ensemble
    assert ens.mode == "vmap" and ens.reason == ""
    assert ens.tied.sum() >= 3
    spread = ens.spread(lambda scm: cl.bow_counterfactual(scm, X, Y, X_PRIME))
    assert spread.summary["range"] > 0.05
    assert spread.summary["tied"] == [int(i) for i in np.flatnonzero(ens.tied)]
    # the tied fits imply nearly the same distribution of (X, Y): exact Gaussian likelihood
    data = cl.sample_bow(1000, seed=0)
    rows = np.stack([data["X"], data["Y"]], axis=-1).astype(np.float64)
    exact = [_bow_log_likelihood(ens.fits[i].params, rows) for i in np.flatnonzero(ens.tied)]
    assert np.ptp(exact) < 0.02  # nats per row


def _bow_log_likelihood(params, rows):
    """Mean log density of the rows under the bivariate normal the bow SCM implies."""
    p = {k: float(v) for k, v in params.items()}
    var_x = p["alpha"] ** 2 + p["sx"] ** 2
    cov_xy = p["beta"] * var_x + p["gamma"] * p["alpha"]
    var_y = p["beta"] ** 2 * var_x + 2 * p["beta"] * p["gamma"] * p["alpha"] + p["gamma"] ** 2
    cov = np.array([[var_x, cov_xy], [cov_xy, var_y + p["sy"] ** 2]])
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", rows, np.linalg.inv(cov), rows)
    return float(np.mean(-0.5 * (quad + logdet + 2 * np.log(2 * np.pi))))


def test_fully_observed_linear_model_refits_agree(direct_ensemble):
    """``y = w x + noise``, fully observed: one maximum-likelihood fit, so every refit
    gives the same ``E[y | do(x = 1)] = w`` (to 1e-3) and the same validation loss."""
    ens = direct_ensemble
    assert ens.tied.all()
    spread = ens.spread(lambda scm: scm.params["w"])
    assert spread.summary["range"] < 1e-3
    assert np.ptp(ens.validation_losses) < 1e-4


def test_spread_is_inference_data_with_a_refit_dim(direct_ensemble):
    ens = direct_ensemble
    spread = ens.spread(
        lambda scm: jnp.stack([scm.params["w"], scm.params["sigma"]]), dims=["parameter"]
    )
    idata = spread.to_inference_data()
    query = idata.predictions["query"]
    assert query.dims == ("chain", "draw", "refit", "parameter")
    assert query.sizes["refit"] == len(ens.fits)
    assert set(idata.predictions.data_vars) == {"query", "validation_loss", "tied"}
    assert "RefitSpread" in repr(spread) and "RefitEnsemble" in repr(ens)


def test_vmap_and_loop_give_the_same_fits():
    data = hm.sample(300, seed=5)
    kwargs = {"rng_key": jax.random.key(3), "num_epochs": 40, "learning_rate": 0.05}
    vmapped = refit_ensemble(hm.direct_model, data, 3, **kwargs)
    looped = refit_ensemble(hm.direct_model, data, 3, vectorize=False, **kwargs)
    assert looped.mode == "loop" and looped.reason == "vectorize=False"
    np.testing.assert_allclose(looped.validation_losses, vmapped.validation_losses, rtol=1e-5)


def test_architectures_share_the_validation_rows():
    data = hm.sample(300, seed=6)
    ens = refit_ensemble(
        hm.direct_model,
        data,
        2,
        rng_key=jax.random.key(0),
        num_epochs=60,
        learning_rate=0.05,
        architectures=[hm.chain_model],
    )
    assert ens.architecture.tolist() == [0, 0, 1, 1]
    # y = w x and y = b (a x) are the same family: all four fits tie
    assert ens.tied.all()


def test_refit_bad_inputs(direct_ensemble):
    data = hm.sample(50)
    with pytest.raises(IdentifiabilityError, match="n_refits must be an integer >= 2"):
        refit_ensemble(hm.direct_model, data, 1, rng_key=jax.random.key(0))
    with pytest.raises(SettingsError, match="model must be a NumPyro program"):
        refit_ensemble("model", data, rng_key=jax.random.key(0))  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=r"architectures\[0\] must be a NumPyro program"):
        refit_ensemble(hm.direct_model, data, architectures=["m"], rng_key=jax.random.key(0))  # type: ignore[list-item]
    with pytest.raises(SettingsError, match="architectures must be a list"):
        refit_ensemble(
            hm.direct_model, data, architectures=hm.direct_model, rng_key=jax.random.key(0)
        )  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="num_epochs must be a positive integer; got 0"):
        refit_ensemble(hm.direct_model, data, rng_key=jax.random.key(0), num_epochs=0)
    with pytest.raises(SettingsError, match="learning_rate must be a positive finite number"):
        refit_ensemble(hm.direct_model, data, rng_key=jax.random.key(0), learning_rate=0.0)
    with pytest.raises(SettingsError, match="init_scale must be a finite number >= 0"):
        refit_ensemble(hm.direct_model, data, rng_key=jax.random.key(0), init_scale=-1.0)
    with pytest.raises(DataError, match=r"lack the per-unit sample site\(s\) \['y'\]"):
        refit_ensemble(hm.direct_model, {"x": data["x"]}, rng_key=jax.random.key(0))
    with pytest.raises(IdentifiabilityError, match="validation_fraction must be in"):
        refit_ensemble(hm.direct_model, data, rng_key=jax.random.key(0), validation_fraction=1)
    lengths = iter(range(100))
    with pytest.raises(IdentifiabilityError, match="different shapes across fits"):
        direct_ensemble.spread(lambda scm: np.zeros(next(lengths) % 2 + 1))
    with pytest.raises(IdentifiabilityError, match="dims names 2 dim"):
        direct_ensemble.spread(lambda scm: scm.params["w"], dims=["a", "b"])
    with pytest.raises(SettingsError, match="query must be a function of a fitted SCM"):
        direct_ensemble.spread(3.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- contraction


def _sum(scm):
    return scm.point["a"] + scm.point["b"]


def _difference(scm):
    return scm.point["a"] - scm.point["b"]


@pytest.mark.slow
def test_contraction_slopes_tell_identified_from_not():
    """Two hidden paths ``y = (a + b) x + noise`` with ``a, b ~ N(0, 1)``: the posterior of
    ``a + b`` is Gaussian with sd ``SIGMA_Y / sqrt(sum x^2)`` (the prior is negligible),
    slope -1/2 in ``n``; that of ``a - b`` is its prior ``N(0, 2)`` at every ``n``
    (orthogonal to what the data see), slope 0. The sd from 500 NUTS draws is within ~7%
    of the truth, a slope error of ~0.03 across two decades of ``n``."""
    data = hm.sample(5_000, seed=0)
    results = contraction(
        hm.parallel_model,
        data,
        {"a + b": _sum, "a - b": _difference},
        sizes=[50, 500, 5_000],
        rng_key=jax.random.key(0),
        num_samples=500,
        num_warmup=300,
    )
    identified, free = results["a + b"], results["a - b"]
    assert abs(identified.slope + 0.5) < 0.1 and identified.verdict == "identified"
    assert abs(free.slope) < 0.1 and free.verdict == "not identified"
    assert free.posterior_sd == pytest.approx(np.sqrt(2.0), rel=0.2)
    assert "verdict='identified'" in repr(identified)
    fig, ax = plt.subplots()
    from scm_ppl.plotting.howfar import plot_contraction

    assert plot_contraction(results, ax=ax) is ax
    plt.close(fig)


def test_contraction_bad_inputs():
    data = hm.sample(100)
    with pytest.raises(
        IdentifiabilityError, match="sizes ask for up to 500 rows but data have 100"
    ):
        contraction(hm.parallel_model, data, _sum, sizes=[50, 500])
    with pytest.raises(IdentifiabilityError, match="strictly increasing"):
        contraction(hm.parallel_model, data, _sum, sizes=[50, 20])
    with pytest.raises(SettingsError, match="needs a Bayesian fit"):
        contraction(hm.parallel_model, data, _sum, sizes=[20, 50], method="map")
    with pytest.raises(SettingsError, match="model must be a NumPyro program"):
        contraction("model", data, _sum, sizes=[20, 50])  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="query must be a callable scm -> float"):
        contraction(hm.parallel_model, data, {"a": 3.0}, sizes=[20, 50])  # type: ignore[arg-type]
    with pytest.raises(IdentifiabilityError, match="no global latent sample sites"):
        contraction(
            hm.direct_model,
            data,
            lambda scm: scm.params["w"],
            sizes=[20, 50],
            method="svi",
            num_epochs=2,
            num_samples=20,
        )
    with pytest.raises(IdentifiabilityError, match="one number per posterior draw"):
        contraction(
            hm.parallel_model,
            data,
            lambda scm: jnp.stack([_sum(scm)] * 2),
            sizes=[20, 50],
            method="svi",
            num_epochs=2,
            num_samples=20,
        )


def test_plots_of_spectrum_and_spread(direct_ensemble):
    from scm_ppl import fit
    from scm_ppl.howfar.fisher_report import local_identifiability
    from scm_ppl.plotting.howfar import plot_fisher_spectrum, plot_refit_spread

    data = hm.sample(200)
    fitted = fit(hm.chain_model, data, num_epochs=20, batch_size=None, progress=False)
    rep = local_identifiability(fitted, data)
    fig, (ax1, ax2) = plt.subplots(1, 2)
    assert plot_fisher_spectrum(rep, ax=ax1) is ax1
    spreads = {
        "direct: w": direct_ensemble.spread(lambda s: s.params["w"]),
        "direct: sigma": direct_ensemble.spread(lambda s: s.params["sigma"]),
    }
    assert plot_refit_spread(spreads, ax=ax2) is ax2
    assert [t.get_text() for t in ax2.get_yticklabels()] == list(spreads)
    plt.close(fig)
