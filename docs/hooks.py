"""MkDocs hooks: the API reference pages from each namespace's ``__all__``, grouped by
task, and the tutorial pages from their jupytext scripts with pre-rendered figures.

Generating the reference from ``__all__`` keeps the site complete as names are added:
a name no task group lists still gets its entry under "More". A public name without a
docstring, or a task group naming a name that is gone, is a warning, and ``mkdocs build
--strict`` (CI) fails on warnings.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

# Warnings on a logger under "mkdocs." count for --strict.
log = logging.getLogger("mkdocs.hooks.scm_ppl")

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
FIGURES = Path(__file__).resolve().parent / "tutorials" / "figures"

# page -> (namespace, title, lead, {task: [names]}); names missing from groups go to "More".
PAGES: dict[str, tuple[str, str, str, dict[str, list[str]]]] = {
    "core": (
        "scm_ppl.core",
        "Programs as SCMs",
        "A NumPyro program read as a structural causal model: its graph, interventions on "
        "it and the noise view of each mechanism.",
        {
            "Read the graph": ["graph"],
            "Intervene": ["do"],
            "Noise views": ["noise_view", "register_noise_view", "NoiseView", "replay_noise"],
            "Keys": ["fast_key"],
        },
    ),
    "query": (
        "scm_ppl.query",
        "Queries: rungs 2 and 3",
        "Interventional and counterfactual queries, their worlds, sweeps and estimates.",
        {
            "Ask a question": ["interventional", "counterfactual"],
            "Worlds as programs": ["twin_world", "multi_world"],
            "Many what-ifs": ["sweep", "dose_response", "shard_units"],
            "Causal quantities": ["ate", "ett", "pn", "ps", "pns"],
            "Over your own rows": ["effect_over_rows", "RowsEstimate"],
            "Exact enumeration of discrete latents": [
                "enumerated_counterfactual",
                "EnumeratedCounterfactual",
            ],
            "Results": ["CausalResult", "DoseResponse", "Estimate"],
        },
    ),
    "graphical": (
        "scm_ppl.graphical",
        "Identification on graphs",
        "ADMGs, the complete ID/IDC algorithm and adjustment sets.",
        {
            "Identify an effect": ["identify", "IdentificationResult", "Hedge"],
            "Identify a counterfactual (ID\\*, IDC\\*)": [
                "identify_counterfactual",
                "CounterfactualIdentification",
                "CounterfactualWitness",
            ],
            "Graphs with latent confounders": ["admg", "ADMG", "latent_projection"],
            "Adjustment": [
                "find_adjustment",
                "AdjustmentFormula",
                "backdoor_sets",
                "frontdoor_sets",
                "is_adjustment_set",
                "is_backdoor_set",
                "is_frontdoor_set",
            ],
            "Evaluate on a table": ["DiscreteJoint"],
        },
    ),
    "learn": (
        "scm_ppl.learn",
        "Learning mechanisms from data",
        "`fit` and the mechanisms it learns; interventions on learned mechanisms.",
        {
            "Fit": ["fit", "FittedSCM", "FitHistory"],
            "Mechanisms": [
                "additive_noise",
                "location_scale",
                "flow",
                "bernoulli",
                "categorical",
                "FlowDistribution",
            ],
            "From a graph and a DataFrame": [
                "scm_from_graph",
                "GraphSCM",
                "MechanismChoice",
                "Hurdle",
                "inhibit",
            ],
            "Intervene on a mechanism": ["do_mechanism", "rotate", "scale", "stretch"],
        },
    ),
    "independence": (
        "scm_ppl.independence",
        "Independence of mechanisms",
        "Genericity of successive mechanisms: trace and spectral density ratios.",
        {
            "Check a program": ["mechanism_genericity", "GenericityReport"],
            "Ratios": [
                "trace_ratio",
                "trace_ratio_from_samples",
                "spectral_density_ratio",
                "averaged_periodogram",
            ],
            "Unchecked variants (inside jit)": [
                "trace_ratio_unchecked",
                "trace_ratio_from_samples_unchecked",
                "spectral_density_ratio_unchecked",
                "averaged_periodogram_unchecked",
            ],
        },
    ),
    "howfar": (
        "scm_ppl.howfar",
        "How far is an answer pinned down?",
        "Local identifiability, refit ensembles, posterior contraction and LP bounds.",
        {
            "Local identifiability": ["local_identifiability", "IdentifiabilityReport"],
            "Refits and contraction": [
                "refit_ensemble",
                "RefitEnsemble",
                "RefitSpread",
                "intervened_mean",
                "contraction",
                "ContractionResult",
            ],
            "Bounds": [
                "bounds",
                "ate_bounds",
                "pn_bounds",
                "ps_bounds",
                "pns_bounds",
                "interventional_bounds",
                "Bounds",
            ],
        },
    ),
    "check": (
        "scm_ppl.check",
        "Does the model deserve trust?",
        "Graph falsification, mechanism checks through the noise view, interventional checks.",
        {
            "Check the graph": ["graph", "implied_independences", "GraphCheck", "ImpliedTest"],
            "Check the mechanisms": ["mechanisms", "MechanismCheck", "MechanismRow"],
            "Check against experiments": ["interventions", "InterventionCheck", "RegimeRow"],
        },
    ),
    "attribution": (
        "scm_ppl.attribution",
        "Attribution",
        "Arrow strength, intrinsic influence, root causes of anomalies, distribution change.",
        {
            "Attribute": [
                "arrow_strength",
                "intrinsic_influence",
                "anomaly",
                "distribution_change",
                "Attribution",
            ],
            "Distances": ["energy_distance"],
        },
    ),
    "plotting": (
        "scm_ppl.plotting",
        "Plots",
        "Every figure (matplotlib, loaded only when a plot is drawn).",
        {},
    ),
    "errors": (
        "scm_ppl.errors",
        "Errors and warnings",
        "Every exception subclasses `ScmPplError` and the builtin it refines.",
        {},
    ),
}


def _public(namespace: str) -> list[str]:
    return list(importlib.import_module(namespace).__all__)


def _home() -> dict[str, str]:
    """Each documented name -> the identifier of its entry (``namespace.name``)."""
    return {name: f"{ns}.{name}" for ns, *_ in PAGES.values() for name in _public(ns)}


def _reference_page(namespace: str, title: str, lead: str, groups: dict[str, list[str]]) -> str:
    module = importlib.import_module(namespace)
    names = _public(namespace)
    out = [f"# {title}\n", f"`{namespace}` — {lead}\n"]
    listed: set[str] = set()
    sections = [*groups.items()]
    rest = [n for n in names if n not in {m for ms in groups.values() for m in ms}]
    if rest:
        sections.append(("More" if groups else "Names", rest))
    for task, members in sections:
        out.append(f"## {task}\n")
        for name in members:
            if name not in names:
                log.warning(
                    "reference: %s lists %r, which is not in %s.__all__", title, name, namespace
                )
                continue
            obj = getattr(module, name)
            if not (getattr(obj, "__doc__", None) or "").strip():
                log.warning("reference: %s.%s has no docstring", namespace, name)
            listed.add(name)
            out.append(f"::: {namespace}.{name}\n")
    return "\n".join(out)


def _top_page() -> str:
    import scm_ppl

    home = _home()
    out = [
        "# The ladder: `scm_ppl`\n",
        "The top level holds the verbs of the ladder and their result types; each is "
        "documented once, in its subpackage.\n",
        "| name | documented in |",
        "|---|---|",
    ]
    for name in scm_ppl.__all__:
        if name in home:
            ns = home[name].rsplit(".", 1)[0]
            out.append(f"| [`{name}`][{home[name]}] | `{ns}` |")
        elif name == "__version__":
            out.append(f"| `__version__` | the version, `{scm_ppl.__version__}` |")
        elif f"scm_ppl.{name}" in {ns for ns, *_ in PAGES.values()}:
            out.append(f"| `{name}` | the subpackage `scm_ppl.{name}` |")
        else:
            log.warning("reference: scm_ppl.%s is in no subpackage's __all__", name)
    return "\n".join(out) + "\n"


def _index_page() -> str:
    out = [
        "# API reference\n",
        "Every public name, by task, with an example that runs.\n",
        "* [The ladder (`scm_ppl`)](top.md): the verbs and result types at the top level.",
    ]
    for page, (ns, title, lead, _) in PAGES.items():
        out.append(f"* [{title} (`{ns}`)]({page}.md): {lead}")
    return "\n".join(out) + "\n"


def _figures_in(source: str) -> list[str]:
    return [f for f in re.findall(r'"([\w.-]+\.png)"', source) if (FIGURES / f).exists()]


def _tutorial_page(path: Path) -> str:
    import jupytext

    notebook = jupytext.read(path, fmt="py:percent")
    cells = list(notebook.cells)
    out = []
    if cells and cells[0].cell_type == "markdown":  # the title first, then how to run it
        out.append(cells.pop(0).source + "\n")
    out += [
        f'!!! note "Run it"\n    `python tutorials/{path.name}` (`SCM_PPL_SMOKE=1` for a '
        "quick run); it is a jupytext script, so `jupytext --to notebook` opens it in "
        "Jupyter. Figures below are from a smoke run.\n"
    ]
    shown: set[str] = set()
    for cell in cells:
        if cell.cell_type == "markdown":
            out.append(cell.source + "\n")
        elif cell.source.strip():
            out.append(f"```python\n{cell.source}\n```\n")
            for fig in _figures_in(cell.source):
                if fig not in shown:
                    shown.add(fig)
                    out.append(f"![{fig}](figures/{fig})\n")
    return "\n".join(out)


def on_files(files, config):
    for page, (ns, title, lead, groups) in PAGES.items():
        content = _reference_page(ns, title, lead, groups)
        files.append(File.generated(config, f"reference/{page}.md", content=content))
    files.append(File.generated(config, "reference/top.md", content=_top_page()))
    files.append(File.generated(config, "reference/index.md", content=_index_page()))
    for path in sorted(TUTORIALS.glob("[0-9][0-9]_*.py")):
        content = _tutorial_page(path)
        files.append(File.generated(config, f"tutorials/{path.stem}.md", content=content))
    return files


# Sphinx roles in docstrings (":func:`~scm_ppl.sweep`") arrive as text before a <code>.
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html, page, config, files):
    return _ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)
