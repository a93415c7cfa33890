"""What a saved and reloaded fit must keep: every learned parameter, bit for bit."""

from __future__ import annotations

import jax
import numpy as np

from scm_ppl import FittedSCM


def assert_same_params(fitted: FittedSCM, loaded: FittedSCM) -> None:
    """Raise unless ``loaded`` holds exactly ``fitted``'s parameters (names and values)."""
    assert set(loaded.params) == set(fitted.params)
    for name, value in fitted.params.items():
        for a, b in zip(jax.tree.leaves(value), jax.tree.leaves(loaded.params[name]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
