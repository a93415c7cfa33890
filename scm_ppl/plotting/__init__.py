"""Every plot of the package; the only place matplotlib is imported. Plot functions
take ``ax=None``, return the ``Axes`` and never call ``plt.show()``."""

from scm_ppl.plotting.bounds import plot_bounds
from scm_ppl.plotting.check import plot_attribution, plot_attribution_graph, plot_graph_check
from scm_ppl.plotting.figures import plot_graph, plot_learning_curve
from scm_ppl.plotting.howfar import plot_contraction, plot_fisher_spectrum, plot_refit_spread
from scm_ppl.plotting.independence import plot_genericity

__all__ = [
    "plot_attribution",
    "plot_attribution_graph",
    "plot_bounds",
    "plot_contraction",
    "plot_fisher_spectrum",
    "plot_genericity",
    "plot_graph",
    "plot_graph_check",
    "plot_learning_curve",
    "plot_refit_spread",
]
