"""Ready structural causal models for tests, tutorials and benchmarks.

Each module holds a NumPyro program ``model(n=1, ...)`` with all per-unit sites in
``numpyro.plate("unit", n)``, its graph stated by hand as ``NODES`` and ``EDGES``, and
the known truths (closed forms, enumerations) that tests compare against.
"""

from types import ModuleType

from models import (
    confounded_linear,
    firing_squad,
    front_door,
    hidden_mediator,
    kidney_stones,
    latent_confounder,
    linear_chain,
    linear_gaussian_dag,
    linear_generator,
    morpho,
    nonlinear,
)

MODELS: dict[str, ModuleType] = {
    "confounded_linear": confounded_linear,
    "firing_squad": firing_squad,
    "front_door": front_door,
    "hidden_mediator": hidden_mediator,
    "kidney_stones": kidney_stones,
    "latent_confounder": latent_confounder,
    "linear_chain": linear_chain,
    "linear_gaussian_dag": linear_gaussian_dag,
    "linear_generator": linear_generator,
    "morpho": morpho,
    "nonlinear": nonlinear,
}
"""Every model module by name. Per-unit sites are scalars, shaped ``(n,)``, except in
:mod:`models.linear_generator`, whose sites are vectors shaped ``(n, dim)``."""

__all__ = [
    "MODELS",
    "confounded_linear",
    "firing_squad",
    "front_door",
    "hidden_mediator",
    "kidney_stones",
    "latent_confounder",
    "linear_chain",
    "linear_gaussian_dag",
    "linear_generator",
    "morpho",
    "nonlinear",
]
