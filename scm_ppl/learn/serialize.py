"""The file format of a saved fit: arrays as ``.npy`` members and metadata as JSON, in one
zip archive that ``numpy.load(path, allow_pickle=False)`` reads.

Members:

* ``metadata.json``: ``{"format": "scm_ppl.FittedSCM", "format_version": 1, ...}`` with
  an ``"arrays"`` table naming each array (group, site, key path in the site's pytree,
  shape, dtype) and the settings and learning curve of the fit;
* ``a0.npy``, ``a1.npy``, ...: the arrays, written with ``allow_pickle=False``.

Nothing in the file is code: loading parses JSON and reads raw arrays. A save writes a
temporary file in the target's directory and renames it over the target
(:func:`os.replace`), so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl._version import __version__
from scm_ppl.errors import SerializationError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "compare_fingerprints",
    "fingerprint",
    "flatten_tree",
    "global_shapes",
    "pack",
    "read_archive",
    "read_history",
    "unpack",
    "write_archive",
    "write_fit",
]

FORMAT = "scm_ppl.FittedSCM"
FORMAT_VERSION = 1
_METADATA = "metadata.json"


def flatten_tree(tree: Any) -> list[tuple[str, Any]]:
    """``(key path, leaf)`` pairs of a pytree, in flattening order (``""`` for an array)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]


def pack(
    params: Mapping[str, Any], groups: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Arrays ``a0, a1, ...`` and the table naming them: every leaf of every parameter
    pytree (group ``"param"``, with its key path) and every array of ``groups``."""
    arrays: dict[str, np.ndarray] = {}
    table: list[dict[str, Any]] = []

    def add(group: str, site: str, keypath: str, value: Any) -> None:
        array = np.asarray(value)
        key = f"a{len(arrays)}"
        arrays[key] = array
        entry = {"key": key, "group": group, "site": site, "path": keypath}
        table.append({**entry, "shape": list(array.shape), "dtype": str(array.dtype)})

    for site, tree in params.items():
        for keypath, leaf in flatten_tree(tree):
            add("param", site, keypath, leaf)
    for group, values in groups.items():
        for site, value in values.items():
            add(group, site, "", value)
    return arrays, table


def unpack(
    arrays: Mapping[str, np.ndarray], table: list[dict[str, Any]], templates: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, jax.Array]]]:
    """Parameter pytrees rebuilt on ``templates`` (the program's own parameters), and the
    other groups as ``{group: {site: array}}``."""
    stored: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for entry in table:
        sites = stored.setdefault(entry["group"], {})
        sites.setdefault(entry["site"], {})[entry["path"]] = arrays[entry["key"]]
    params = {}
    for site, template in templates.items():
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        values = stored.get("param", {}).get(site, {})
        rebuilt = [jnp.asarray(values[jax.tree_util.keystr(path)]) for path, _ in leaves]
        params[site] = jax.tree_util.tree_unflatten(treedef, rebuilt)
    groups = {
        group: {site: jnp.asarray(v[""]) for site, v in stored.get(group, {}).items()}
        for group in ("point", "loc", "scale", "samples")
    }
    return params, groups


def fingerprint(
    params: Mapping[str, Any], globals_: Mapping[str, tuple[tuple[int, ...], str]]
) -> dict[str, list]:
    """The structure a fit file depends on: parameter leaves and global latent sites,
    each with its shape and dtype."""
    return {
        "params": [
            [site, path, list(np.shape(leaf)), str(jnp.result_type(leaf))]
            for site, tree in sorted(params.items())
            for path, leaf in flatten_tree(tree)
        ],
        "globals": [
            [site, list(shape), dtype] for site, (shape, dtype) in sorted(globals_.items())
        ],
    }


def global_shapes(
    values: Mapping[str, Any], draws: Mapping[str, Any] | None = None
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype of each global latent site, from its value in ``values`` or from
    its draws in ``draws`` (shaped ``(draw, *site_shape)``): the ``globals_`` of
    :func:`fingerprint`."""
    shapes = {k: (tuple(np.shape(v)), str(jnp.result_type(v))) for k, v in values.items()}
    for k, v in (draws or {}).items():
        shapes[k] = (tuple(np.shape(v))[1:], str(jnp.result_type(v)))
    return shapes


def compare_fingerprints(saved: Mapping[str, list], program: Mapping[str, list]) -> None:
    """Raise :class:`SerializationError` listing every difference between the two."""
    problems = []
    for group, noun in (("params", "parameter"), ("globals", "global latent site")):
        a = {tuple(e[:-2]): tuple(map(str, e[-2:])) for e in saved.get(group, [])}
        b = {tuple(e[:-2]): tuple(map(str, e[-2:])) for e in program.get(group, [])}
        label = lambda key: "".join(map(str, key))
        if only_file := sorted(label(k) for k in a.keys() - b.keys()):
            problems.append(f"{noun}s in the file but not the program: {only_file}")
        if only_program := sorted(label(k) for k in b.keys() - a.keys()):
            problems.append(f"{noun}s in the program but not the file: {only_program}")
        for key in sorted(a.keys() & b.keys()):
            if a[key] != b[key]:
                problems.append(
                    f"{noun} {label(key)} is shape/dtype {a[key]} in the file but {b[key]} in "
                    "the program"
                )
    if problems:
        raise SerializationError(
            "The program does not match the saved fit: " + "; ".join(problems) + ". Load "
            "with the program (and model_kwargs) that was fitted."
        )


def _write_array(member: Any, array: np.ndarray) -> None:
    np.lib.format.write_array(member, array, allow_pickle=False)


def write_archive(path: str | os.PathLike, arrays: Mapping[str, Any], metadata: dict) -> None:
    """Write ``arrays`` (name -> array) and ``metadata`` (JSON-ready) to ``path`` atomically."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save to {path!r}: directory {directory!r} does not exist.")
    text = json.dumps(metadata, indent=1, allow_nan=True)
    # A fresh name in the same directory (same filesystem, so the rename is atomic);
    # opened with "x" so it honours the umask and never clobbers another file.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(_METADATA, text)
                for name, value in arrays.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        _write_array(member, np.asarray(value))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_fit(
    path: str | os.PathLike,
    params: Mapping[str, Any],
    groups: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    history: Mapping[str, Any],
) -> None:
    """Write a fit: ``params`` and the array ``groups`` (``point``, ``loc``, ``scale``,
    ``samples``) as arrays; ``settings``, the learning curve ``history`` (the fields of a
    ``FitHistory``) and the fingerprint as metadata."""
    arrays, table = pack(params, groups)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scm_ppl_version": __version__,
        "settings": settings,
        "fingerprint": fingerprint(params, global_shapes(groups["point"], groups["samples"])),
        "history": {
            "losses": [float(x) for x in history["losses"]],
            "validation_losses": [float(x) for x in history["validation_losses"]],
            "best_epoch": int(history["best_epoch"]),
            "stopped_early": bool(history["stopped_early"]),
            "seconds": float(history["seconds"]),
            "penalties": [float(x) for x in history.get("penalties", ())],
        },
        "arrays": table,
    }
    write_archive(path, arrays, metadata)


def read_history(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ``FitHistory`` from the ``"history"`` metadata of a fit file."""
    return {
        "losses": np.asarray(saved["losses"], dtype=np.float64),
        "validation_losses": np.asarray(saved["validation_losses"], dtype=np.float64),
        "best_epoch": int(saved["best_epoch"]),
        "stopped_early": bool(saved["stopped_early"]),
        "seconds": float(saved["seconds"]),
        "penalties": np.asarray(saved.get("penalties", []), dtype=np.float64),
    }


def read_archive(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by :func:`write_archive`; check its format and version."""
    path = os.fspath(path)
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        # checked first: numpy leaks its file handle on a damaged zip archive
        raise SerializationError(
            f"{path!r} is not a saved scm_ppl fit: it is not a zip archive (FittedSCM.save "
            "writes one), or it is damaged."
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # numpy raises several types for files that are not archives
        raise SerializationError(
            f"{path!r} is not a saved scm_ppl fit (numpy cannot read it as an archive: {err})."
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SerializationError(
            f"{path!r} holds a single array, not a saved scm_ppl fit (FittedSCM.save writes one)."
        )
    with archive:
        if _METADATA not in archive.files:
            raise SerializationError(
                f"{path!r} is a NumPy archive without {_METADATA}: not a saved scm_ppl fit."
            )
        try:
            metadata = json.loads(bytes(archive[_METADATA]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SerializationError(f"The metadata of {path!r} is not valid JSON: {err}.") from err
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise SerializationError(f"{path!r} is not a saved scm_ppl fit (format {FORMAT!r}).")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise SerializationError(
                f"{path!r} was written in fit-file format version {version!r} (by scm_ppl "
                f"{metadata.get('scm_ppl_version', '?')}); this scm_ppl reads version "
                f"{FORMAT_VERSION}. Load it with the scm_ppl version that wrote it, or refit."
            )
        arrays: dict[str, np.ndarray] = {}
        for entry in metadata.get("arrays", []):
            key = entry["key"]
            if key not in archive.files:
                raise SerializationError(f"{path!r} lacks the array {key!r} its metadata lists.")
            value = archive[key]
            if list(value.shape) != list(entry["shape"]) or str(value.dtype) != entry["dtype"]:
                raise SerializationError(
                    f"Array {key!r} of {path!r} has shape {value.shape} and dtype {value.dtype}, "
                    f"but its metadata says {tuple(entry['shape'])} and {entry['dtype']}: the "
                    "file is damaged."
                )
            arrays[key] = value
    return arrays, metadata
