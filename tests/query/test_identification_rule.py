"""One identification rule (issue 16, item 2): queries judge identification on the ADMG
that ``identify`` reads, with or without evidence, and say which sites they took as
observed; a measured root confounder that the default projection hides is named.

Sources: the bow arc and the front door are Pearl, *Causality*, 2nd ed., §3.3 and
Fig. 3.5; the back-door formula Σ_z P(z) P(y | x, z) is §3.3.1.
"""

from __future__ import annotations

import warnings

import jax
import numpyro
import numpyro.distributions as dist
import pytest

from models import front_door, latent_confounder
from scm_ppl import ate, counterfactual, ett, identify, interventional
from scm_ppl.errors import (
    CounterfactualNotIdentifiedWarning,
    GraphError,
    NotIdentifiableError,
    NotIdentifiableWarning,
)

KEY = jax.random.PRNGKey(0)


def bow_arc():
    u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    x = numpyro.sample("x", dist.Normal(u, 1.0))
    numpyro.sample("y", dist.Normal(2.0 * x + u, 1.0))


def measured_root():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))  # a confounder the user has measured
    x = numpyro.sample("x", dist.Normal(z, 1.0))
    numpyro.sample("y", dist.Normal(x + z, 1.0))


def test_bow_arc_without_evidence_raises_under_strict_as_identify_says():
    # the program cannot tell a latent u from a measured one: identify names it either way
    with pytest.warns(NotIdentifiableWarning, match=r"observed=\['x', 'y', 'u'\]"):
        assert not identify(bow_arc, "x", "y").identifiable
    with pytest.raises(NotIdentifiableError, match=r"P\(y \| do\(x\)\) is not identified"):
        interventional(bow_arc, {"x": 1.0}, rng_key=KEY, num_samples=10, strict=True)


def test_bow_arc_without_evidence_warns_and_records_the_rule():
    with pytest.warns(NotIdentifiableWarning, match=r"latent \['u'\].*scm_ppl\.bounds"):
        result = interventional(bow_arc, {"x": 1.0}, rng_key=KEY, num_samples=10)
    meta = result.attrs["identification"]["do"]
    assert meta["identified"] is False
    assert meta["latent"] == ["u"] and meta["observed"] == ["x", "y"]
    assert "with or without evidence" in meta["observed_rule"]
    with pytest.warns(NotIdentifiableWarning):
        ate(bow_arc, "x", "y", rng_key=KEY, num_samples=10)


def test_front_door_program_does_not_warn():
    result = interventional(front_door.model, {"smoking": 1}, rng_key=KEY, num_samples=10)
    meta = result.attrs["identification"]["do"]
    assert meta["identified"] is True and meta["latent"] == ["U"]
    assert "estimand" in meta


def test_measured_root_gives_back_door_when_observed_and_a_warning_naming_it_when_not():
    found = identify(measured_root, "x", "y", observed=["z", "x", "y"])
    assert found.identifiable and str(found.estimand) == "Σ_{z} P(z) P(y | x, z)"
    with pytest.warns(NotIdentifiableWarning, match=r"observed=\['x', 'y', 'z'\]"):
        hidden = identify(measured_root, "x", "y")
    assert not hidden.identifiable
    with pytest.warns(NotIdentifiableWarning, match=r"If you measured \['z'\]"):
        interventional(measured_root, {"x": 1.0}, rng_key=KEY, num_samples=10)
    # evidence on z is data on z: observed, identified, no warning
    fine = interventional(measured_root, {"x": 1.0}, evidence={"z": 0.3}, rng_key=KEY)
    assert fine.attrs["identification"]["do"]["identified"] is True


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.InferenceWarning")
def test_evidence_does_not_change_the_rule():
    with pytest.raises(NotIdentifiableError, match=r"latent \['U'\]"):
        interventional(
            latent_confounder.model, {"X": 0.0}, evidence={"Y": 0.2}, rng_key=KEY, strict=True
        )
    with pytest.raises(NotIdentifiableError, match=r"latent \['U'\]"):
        interventional(latent_confounder.model, {"X": 0.0}, rng_key=KEY, strict=True)


def backdoor_binary():
    z = numpyro.sample("z", dist.Bernoulli(0.5))
    x = numpyro.sample("x", dist.Bernoulli(0.2 + 0.5 * z))
    numpyro.sample("y", dist.Bernoulli(0.1 + 0.3 * x + 0.4 * z))


def test_counterfactual_says_when_it_is_identified_from_the_graph():
    # ETT given the back-door covariate: P(y_{x=0} | x=1, z) = P(y | x=0, z)
    # (Shpitser & Pearl 2008; Pearl, Causality, §9.2.4 / §11.9.1).
    ett = counterfactual(backdoor_binary, {"x": 1, "z": 0}, {"x": 0}, rng_key=KEY, num_samples=5)
    meta = ett.attrs["counterfactual_identification"]
    assert meta["identified"] is True and meta["query"] == "P(y_{x=0}=1000 | x=1, z=0)"
    assert meta["estimand"].endswith("= P(y | x, z)")
    # the probability of necessity is not identified (Pearl, Causality, §9.2)
    pn = counterfactual(backdoor_binary, {"x": 1, "y": 1, "z": 0}, {"x": 0}, rng_key=KEY)
    meta = pn.attrs["counterfactual_identification"]
    assert meta["identified"] is False and meta["see"] == "scm_ppl.bounds"
    with pytest.raises(NotIdentifiableError, match=r"ID\*/IDC\*.*scm_ppl\.bounds"):
        counterfactual(
            backdoor_binary, {"x": 1, "y": 1, "z": 0}, {"x": 0}, rng_key=KEY, strict=True
        )


def test_queries_take_observed_for_a_measured_root():
    result = interventional(measured_root, {"x": 1.0}, rng_key=KEY, num_samples=10, observed=["z"])
    meta = result.attrs["identification"]["do"]
    assert meta["identified"] is True and meta["latent"] == [] and "z" in meta["observed"]
    with pytest.raises(GraphError, match=r"observed= names \['w'\], which are not sites"):
        interventional(measured_root, {"x": 1.0}, rng_key=KEY, observed=["w"])


def test_a_counterfactual_the_graph_does_not_identify_warns_at_the_callers_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counterfactual(backdoor_binary, {"x": 1, "z": 0}, {"x": 0}, rng_key=KEY, num_samples=5)
        assert not caught  # ETT given the back-door covariate is identified: no warning
        counterfactual(backdoor_binary, {"x": 1, "y": 1, "z": 0}, {"x": 0}, rng_key=KEY)
    (warning,) = caught
    assert warning.category is CounterfactualNotIdentifiedWarning
    assert issubclass(warning.category, NotIdentifiableWarning)  # one filter silences both
    assert warning.filename == __file__  # the user's line, not the package's
    assert "scm_ppl.bounds" in str(warning.message) and "strict=True" in str(warning.message)


def test_one_warning_when_the_interventional_part_is_not_identified_either():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counterfactual(bow_arc, {"x": 1.0, "y": 0.5}, {"x": 0.0}, rng_key=KEY, num_samples=20,
                       num_warmup=20)  # fmt: skip
    kinds = [w.category for w in caught if issubclass(w.category, NotIdentifiableWarning)]
    assert kinds == [NotIdentifiableWarning]


def test_ett_reads_margins_and_does_not_warn_about_the_joint_of_its_worlds():
    # ETT needs P(y_{x=0} | x = 1), identified under the back-door set {z} (Shpitser &
    # Pearl 2008), though the joint of its two worlds that ID* would judge is not.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ett(backdoor_binary, "x", "y", rng_key=KEY, num_samples=50, observed=["z"])
    assert not [w for w in caught if issubclass(w.category, NotIdentifiableWarning)]


def test_reading_world_margins_is_scoped_to_its_own_thread_and_recorded():
    # ett used to silence the warning with a process-wide warnings filter, which would
    # also hide a genuine warning raised meanwhile by another thread's query.
    import threading

    from scm_ppl.query.identification import world_margins_only

    def not_identified():
        return counterfactual(backdoor_binary, {"x": 1, "y": 1, "z": 0}, {"x": 0}, rng_key=KEY)

    other_thread: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with world_margins_only():
            quiet = not_identified()
            thread = threading.Thread(target=lambda: other_thread.append(not_identified()))
            thread.start()
            thread.join()
        loud = not_identified()
    kinds = [w.category for w in caught if issubclass(w.category, NotIdentifiableWarning)]
    assert kinds == [CounterfactualNotIdentifiedWarning] * 2  # the other thread's, then after
    assert quiet.attrs["counterfactual_identification"]["read"] == "each world's margin only"
    assert quiet.attrs["counterfactual_identification"]["identified"] is False
    assert "read" not in loud.attrs["counterfactual_identification"]
    assert other_thread and "read" not in other_thread[0].attrs["counterfactual_identification"]
