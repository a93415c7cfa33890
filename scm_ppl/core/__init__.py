"""A NumPyro program read as an SCM: noise views, interventions and ``do``, noise replay,
the program record and its caches, the causal graph, and the random-number keys.

Nothing here knows about queries, learning or identification: every other layer is
built on this one.
"""

from scm_ppl.core.causal_graph import graph
from scm_ppl.core.handlers import do, replay_noise
from scm_ppl.core.noise import NoiseView, noise_view, register_noise_view
from scm_ppl.core.prng import fast_key

__all__ = [
    "NoiseView",
    "do",
    "fast_key",
    "graph",
    "noise_view",
    "register_noise_view",
    "replay_noise",
]
