"""What a change of a mechanism *means*: small pure functions of a parameter.

:class:`stretch` dilates convolution kernels, :class:`rotate` changes a matrix's input or
output basis and :class:`scale` multiplies every array; each takes an array or a module
and returns one of the same structure. *Where* a change applies (which parameter, which
world) is :func:`~scm_ppl.learn.mechanism_intervention.do_mechanism`'s handler; any
callable on the parameter pytree serves it as well as these.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from scm_ppl.errors import InterventionError

__all__ = ["rotate", "scale", "stretch"]


def _conv_layers(tree: Any) -> list[Any]:
    kinds = (eqx.nn.Conv, eqx.nn.ConvTranspose)
    leaves = jax.tree.leaves(tree, is_leaf=lambda m: isinstance(m, kinds))
    return [m for m in leaves if isinstance(m, kinds)]


def _linear_weight_owner(tree: Any, what: str) -> Any:
    layers = [m for m in jax.tree.leaves(tree, is_leaf=lambda m: isinstance(m, eqx.nn.Linear))]
    layers = [m for m in layers if isinstance(m, eqx.nn.Linear)]
    if len(layers) != 1:
        raise InterventionError(
            f"{what} acts on one matrix; the target holds {len(layers)} eqx.nn.Linear layers. "
            "Name a single layer (e.g. 'net.layers[0]') or its weight."
        )
    return layers[0]


def _dilate_axis(kernel: jax.Array, alpha: float, axis: int) -> jax.Array:
    """``h'(t) = h(c + (t - c) / α) / α`` along ``axis`` (centre ``c``, linear interpolation,
    zero outside the support): the dilation whose frequency response is ``ĥ(α ν)``."""
    size = kernel.shape[axis]
    centre = (size - 1) / 2.0
    source = centre + (np.arange(size) - centre) / alpha
    lower = np.floor(source).astype(int)
    frac = source - lower
    moved = jnp.moveaxis(kernel, axis, -1)

    def tap(index: np.ndarray) -> jax.Array:
        inside = (index >= 0) & (index < size)
        return jnp.where(inside, moved[..., np.clip(index, 0, size - 1)], 0.0)

    out = (1.0 - frac) * tap(lower) + frac * tap(lower + 1)
    return jnp.moveaxis(out / alpha, -1, axis)


@dataclasses.dataclass(frozen=True)
class stretch:
    """Dilate a convolution kernel by ``alpha``: ``ĥ(ν) → ĥ(α ν)``.

    In space ``h'(t) = h(c + (t - c)/α) / α`` about the kernel's centre ``c``, resampled by
    linear interpolation on the kernel's own grid (its shape is kept, so for ``α > 1`` the
    tails that leave the support are cut). Cutting them lowers the gain at zero frequency,
    which ``ĥ(αν)`` keeps: with ``keep_dc=True`` (default) each kernel is rescaled so that
    its sum, ``ĥ(0)``, is unchanged, by a factor within ``[α^-d, α^d]`` for ``d`` spatial
    axes; kernels whose sum is under a tenth of their absolute mass (taps that nearly
    cancel: no gain at zero frequency to keep) are left as they are.
    ``stretch(1)`` is the identity.

    Applies to a kernel array (every axis is spatial up to 2-D arrays; for higher ranks the
    last ``ndim - 2`` axes, the layout ``(out, in, *space)`` of Equinox convolutions;
    ``axes=`` overrides), or to a module: the weight of every ``eqx.nn.Conv`` /
    ``eqx.nn.ConvTranspose`` inside it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> box = jnp.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    >>> wide = stretch(2.0)(box)                     # twice as wide about the centre
    >>> wide.shape, round(float(wide.sum()), 6)      # shape and sum (the gain at 0) kept
    ((7,), 3.0)
    >>> bool(jnp.allclose(stretch(1.0)(box), box))
    True
    """

    alpha: float
    axes: tuple[int, ...] | None = None
    keep_dc: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)) or (
            self.alpha <= 0
        ):
            raise InterventionError(f"stretch needs a finite alpha > 0; got {self.alpha!r}.")

    def kernel(self, kernel: jax.Array) -> jax.Array:
        axes = self.axes
        if axes is None:
            axes = tuple(range(kernel.ndim)) if kernel.ndim <= 2 else tuple(range(2, kernel.ndim))
        stretched = kernel
        for axis in axes:
            stretched = _dilate_axis(stretched, float(self.alpha), axis)
        if not self.keep_dc:
            return stretched
        old_dc = jnp.sum(kernel, axis=axes, keepdims=True)
        new_dc = jnp.sum(stretched, axis=axes, keepdims=True)
        lowpass = lambda k, dc: jnp.abs(dc) >= 0.1 * jnp.sum(jnp.abs(k), axis=axes, keepdims=True)
        # The sum only measures cut-off tails where it is a real part of the kernel, before
        # and after: for taps that nearly cancel, old/new sums is noise (it reached x400 on
        # learned 5x5 kernels). No cut loses more than the support's share: factor <= alpha**d.
        usable = lowpass(kernel, old_dc) & lowpass(stretched, new_dc) & (old_dc * new_dc > 0)
        bound = max(self.alpha, 1 / self.alpha) ** len(axes)
        factor = jnp.clip(old_dc / jnp.where(usable, new_dc, 1.0), 1 / bound, bound)
        return stretched * jnp.where(usable, factor, 1.0)

    def __call__(self, target: Any) -> Any:
        if isinstance(target, (jax.Array, np.ndarray)):
            return self.kernel(jnp.asarray(target))
        convs = _conv_layers(target)
        if not convs:
            raise InterventionError(
                "stretch dilates convolution kernels; the target is neither an array nor a "
                f"module holding eqx.nn.Conv/ConvTranspose layers (got {type(target).__name__})."
            )
        return eqx.tree_at(
            lambda t: [m.weight for m in _conv_layers(t)],
            target,
            [self.kernel(m.weight) for m in convs],
        )


@dataclasses.dataclass(frozen=True, eq=False)
class rotate:
    """Multiply a matrix by an orthogonal (or any square) ``Q``.

    ``side="input"`` (default): ``A → A Q``, a change of the mechanism's input basis;
    ``side="output"``: ``A → Q A``, a change of its output basis. Applies to a 2-D array or
    to a module holding exactly one ``eqx.nn.Linear`` (its weight, ``(out, in)``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> a = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    >>> swap = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    >>> rotate(swap)(a).tolist()                     # A Q: the inputs swapped
    [[2.0, 1.0], [4.0, 3.0]]
    >>> rotate(swap, side="output")(a).tolist()      # Q A: the outputs swapped
    [[3.0, 4.0], [1.0, 2.0]]
    """

    matrix: ArrayLike
    side: str = "input"

    def __post_init__(self) -> None:
        q = np.asarray(self.matrix)
        if q.ndim != 2 or q.shape[0] != q.shape[1]:
            raise InterventionError(f"rotate needs a square matrix Q; got shape {q.shape}.")
        if self.side not in ("input", "output"):
            raise InterventionError(f"rotate side must be 'input' or 'output'; got {self.side!r}.")

    def matmul(self, a: jax.Array) -> jax.Array:
        q = jnp.asarray(self.matrix, dtype=a.dtype)
        axis = -1 if self.side == "input" else -2
        if a.ndim < 2 or a.shape[axis] != q.shape[0]:
            raise InterventionError(
                f"rotate(Q, side={self.side!r}) with Q of shape {q.shape} cannot act on a "
                f"parameter of shape {a.shape}: its {self.side} dimension must be {q.shape[0]}."
            )
        return a @ q if self.side == "input" else q @ a

    def __call__(self, target: Any) -> Any:
        if isinstance(target, (jax.Array, np.ndarray)):
            return self.matmul(jnp.asarray(target))
        layer = _linear_weight_owner(target, "rotate")
        return eqx.tree_at(
            lambda t: _linear_weight_owner(t, "rotate").weight, target, self.matmul(layer.weight)
        )


@dataclasses.dataclass(frozen=True)
class scale:
    """Multiply every array of the mechanism's parameters by ``c``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> scale(2.0)({"w": jnp.array([1.0, -1.0]), "b": jnp.array(0.5)})["w"].tolist()
    [2.0, -2.0]
    """

    c: float

    def __call__(self, target: Any) -> Any:
        return jax.tree.map(lambda a: a * jnp.asarray(self.c, jnp.result_type(a)), target)
