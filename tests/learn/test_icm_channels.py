"""The ICM penalty on a conv pair whose second layer reads extra channels (the image
decoders concatenate their parents as constant planes after the first layer's output)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from scm_ppl.errors import GenericityError
from scm_ppl.learn.icm_penalty import icm_penalty_value, resolve_pairs


def _weights(in_second: int) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "first": jax.random.normal(k1, (3, 1, 3, 3)),  # 3 channels out
        "second": jax.random.normal(k2, (2, in_second, 3, 3)),
    }


def test_extra_input_channels_are_left_out_of_the_pair() -> None:
    params = _weights(in_second=5)  # 3 from the first layer, then 2 constant planes
    (pair,) = resolve_pairs([("first", "second")], params, {})
    leading = {**params, "second": params["second"][:, :3]}
    (same,) = resolve_pairs([("first", "second")], leading, {})
    got = icm_penalty_value([pair], params, {})
    want = icm_penalty_value([same], leading, {})
    assert np.isfinite(float(got)) and float(got) == pytest.approx(float(want), rel=1e-6)
    # the extra channels do not enter: changing them leaves the penalty as it was
    moved = {**params, "second": params["second"].at[:, 3:].set(7.0)}
    assert float(icm_penalty_value([pair], moved, {})) == pytest.approx(float(got), rel=1e-6)


def test_a_second_layer_reading_fewer_channels_than_the_first_makes_is_refused() -> None:
    params = _weights(in_second=2)
    with pytest.raises(GenericityError, match="cannot feed"):
        resolve_pairs([("first", "second")], params, {})
