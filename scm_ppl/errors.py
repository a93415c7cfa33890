"""The exceptions and warnings scm_ppl raises.

Every error subclasses both :class:`ScmPplError` and the builtin it refines, so
``except ValueError`` keeps working for callers who do not know this package.
Messages say what was expected, what arrived, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AbductionError",
    "BoundsError",
    "CounterfactualNotIdentifiedWarning",
    "CriticismError",
    "DataError",
    "DataWarning",
    "EstimandError",
    "EvidenceError",
    "FitError",
    "GenericityError",
    "GraphError",
    "IdentifiabilityError",
    "InferenceWarning",
    "InterventionError",
    "NoiseViewError",
    "NotIdentifiableError",
    "NotIdentifiableWarning",
    "ProgramError",
    "ScmPplError",
    "ScmPplWarning",
    "SerializationError",
    "SettingsError",
]


class ScmPplError(Exception):
    """Base class of every error raised by scm_ppl."""


class NoiseViewError(ScmPplError, TypeError):
    """A distribution has no noise view, or its noise view cannot do what was asked."""


class InterventionError(ScmPplError, ValueError):
    """An intervention names an unknown site or has a value of the wrong kind or shape."""


class EvidenceError(ScmPplError, ValueError):
    """Evidence names an unknown site, does not fit its shape, or holds NaN/inf."""


class AbductionError(ScmPplError, ValueError):
    """The requested abduction method cannot be used for this query."""


class BoundsError(ScmPplError, ValueError):
    """A bounds query is malformed, needs a canonical model that is too large, or its
    distributions are incompatible with the graph."""


class CriticismError(ScmPplError, ValueError):
    """A model check or a causal attribution cannot run as asked: a program without a
    per-unit plate, a test that does not fit a site's kind (a continuous test of a
    discrete site), a target that is not a per-unit scalar, or more players than exact
    Shapley values enumerate without ``approximate=True``."""


class GraphError(ScmPplError, ValueError):
    """A causal graph is malformed (a cycle, an unknown node, ...)."""


class EstimandError(ScmPplError, ValueError):
    """An estimand cannot be built or evaluated as asked (bad joint, missing values, ...)."""


class NotIdentifiableError(ScmPplError, ValueError):
    """A query that is not identifiable was asked for a value from observational data."""


class ScmPplWarning(UserWarning):
    """Base class of every warning raised by scm_ppl."""


class ProgramError(ScmPplError, RuntimeError):
    """Running the user's program raised; the original exception is chained."""


class InferenceWarning(ScmPplWarning):
    """Approximate inference looks unreliable (divergences, high r_hat, low ESS)."""


class DataError(ScmPplError, ValueError):
    """Training data do not fit the program: missing or unknown sites, wrong shapes or
    dtypes, NaN/inf, no rows, or regime tags that do not match the interventions."""


class FitError(ScmPplError, RuntimeError):
    """Fitting failed: the loss became NaN/inf (the fit diverged)."""


class GenericityError(ScmPplError, ValueError):
    """A genericity measure (trace ratio, spectral density ratio) got inputs of the wrong
    shape or values: mismatched dimensions, a non-PSD covariance, a negative power spectrum,
    a kernel longer than its grid, or mechanism pairs that cannot be found."""


class IdentifiabilityError(ScmPplError, ValueError):
    """A mechanism-level identifiability diagnostic cannot run as asked: a query that does
    not return a scalar or cannot be differentiated, data sizes beyond the data, a fit of
    the wrong kind, or settings out of range."""


class SerializationError(ScmPplError, ValueError):
    """A saved fit cannot be loaded: not a fit file, another format version, or a
    program whose parameters do not match the file's."""


class NotIdentifiableWarning(ScmPplWarning):
    """The query is not identified from observational data on the program's ADMG: its
    answer rests on the program's parametric assumptions, not on the data alone."""


class CounterfactualNotIdentifiedWarning(NotIdentifiableWarning):
    """The counterfactual is not identified from the program's graph by ID*/IDC*: the
    answer rests on the mechanisms' functional form, not on the data the graph allows.
    Most counterfactuals with evidence on an outcome are in this case; filter this class
    on its own once read (``warnings.filterwarnings("ignore",
    category=CounterfactualNotIdentifiedWarning)``)."""


class SettingsError(ScmPplError, ValueError, TypeError):
    """A setting is out of range or of the wrong type: a count that must be a positive
    integer, an unknown ``method=``, an ``rng_key`` that is not a JAX key, a mapping of
    sites that is not one. The same mistake reads the same wherever it is made (the
    checks live in :mod:`scm_ppl.core.validate`)."""


class DataWarning(ScmPplWarning):
    """Rows of the data or evidence were dropped on an explicit request (``missing="drop"``,
    ``impossible="drop"``); the message and the result's ``attrs`` say how many."""
