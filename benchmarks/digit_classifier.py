"""The digit classifier that reads 'digit preserved' for the Morpho-MNIST benchmark.

A small CNN (LeNet-like: a 5x5 convolution of 24 channels and a 3x3 one of 48, each with
2x2 max-pooling, a hidden layer of 128 with dropout 0.4) trained on the 9,500 factual
training digits with random affine augmentation (rotation up to 12 degrees, scale
0.9-1.1, shear up to 0.15, shift up to 2 pixels: the augmentation of Simard et al. 2003
without the elastic part), 20 epochs of Adam with a cosine schedule. Trained once and cached in
``benchmarks/results/`` (weights as float16 ``.npz``, keyed by the settings), so the
benchmark does not retrain it.

Usage::

    .venv/bin/python benchmarks/digit_classifier.py   # trains (or loads) and reports accuracy
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

CACHE = Path(__file__).parent / "results"
SETTINGS = {"epochs": 20, "batch": 128, "lr": 2e-3, "seed": 7, "version": 3}


class DigitCNN(eqx.Module):
    """``(28, 28)`` image on ``[0, 1]`` -> 10 logits."""

    convs: tuple[eqx.nn.Conv2d, ...]
    hidden: eqx.nn.Linear
    out: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(self, key: jax.Array) -> None:
        k = jax.random.split(key, 4)
        self.convs = (
            eqx.nn.Conv2d(1, 24, 5, padding=2, key=k[0]),
            eqx.nn.Conv2d(24, 48, 3, padding=1, key=k[1]),
        )
        self.hidden = eqx.nn.Linear(48 * 7 * 7, 128, key=k[2])
        self.out = eqx.nn.Linear(128, 10, key=k[3])
        self.dropout = eqx.nn.Dropout(0.4)

    def __call__(self, image: jax.Array, key: jax.Array | None = None) -> jax.Array:
        pool = eqx.nn.MaxPool2d(2, 2)
        h = image[None]
        for conv in self.convs:
            h = pool(jax.nn.relu(conv(h)))
        h = jax.nn.relu(self.hidden(h.reshape(-1)))
        h = self.dropout(h, key=key, inference=key is None)
        return self.out(h)


def _affine(image: jax.Array, key: jax.Array) -> jax.Array:
    """A random affine warp about the image centre (bilinear, zero outside)."""
    ka, ks, kh, kt = jax.random.split(key, 4)
    angle = jax.random.uniform(ka, (), minval=-0.21, maxval=0.21)
    scale = jax.random.uniform(ks, (), minval=0.9, maxval=1.1)
    shear = jax.random.uniform(kh, (), minval=-0.15, maxval=0.15)
    shift = jax.random.uniform(kt, (2,), minval=-2.0, maxval=2.0)
    c, s = jnp.cos(angle), jnp.sin(angle)
    inv = jnp.array([[c, -s], [s, c]]) @ jnp.array([[1.0, shear], [0.0, 1.0]]) / scale
    yy, xx = jnp.meshgrid(jnp.arange(28.0), jnp.arange(28.0), indexing="ij")
    centred = jnp.stack([yy.ravel() - 13.5 - shift[0], xx.ravel() - 13.5 - shift[1]])
    src = inv @ centred + 13.5
    out = jax.scipy.ndimage.map_coordinates(image, [src[0], src[1]], order=1, cval=0.0)
    return out.reshape(28, 28)


def train(images: np.ndarray, labels: np.ndarray, **settings: float) -> DigitCNN:
    """A :class:`DigitCNN` trained on ``images`` (0-1 pixels) and ``labels``."""
    s = {**SETTINGS, **settings}
    net = DigitCNN(jax.random.key(int(s["seed"])))
    steps_per_epoch = -(-len(images) // int(s["batch"]))
    sched = optax.cosine_decay_schedule(float(s["lr"]), int(s["epochs"]) * steps_per_epoch)
    opt = optax.adam(sched)
    state = opt.init(eqx.filter(net, eqx.is_array))
    x, y = jnp.asarray(images), jnp.asarray(labels)

    @eqx.filter_jit
    def step(net, state, xb, yb, key):
        ka, kd = jax.random.split(key)
        xb = jax.vmap(_affine)(xb, jax.random.split(ka, len(xb)))

        def loss(m):
            logits = jax.vmap(m)(xb, jax.random.split(kd, len(xb)))
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        g = eqx.filter_grad(loss)(net)
        upd, state = opt.update(g, state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, upd), state

    rng = np.random.default_rng(int(s["seed"]))
    key = jax.random.key(int(s["seed"]))
    batch = int(s["batch"])
    for _ in range(int(s["epochs"])):
        order = rng.permutation(len(x))
        # Drop the last partial batch: one compiled shape.
        for k in range(0, len(x) - batch + 1, batch):
            key, sub = jax.random.split(key)
            idx = order[k : k + batch]
            net, state = step(net, state, x[idx], y[idx], sub)
    return net


def _cache_path(num_train: int) -> Path:
    tag = json.dumps({**SETTINGS, "train": num_train}, sort_keys=True)
    return CACHE / f"digit_cnn_{hashlib.sha256(tag.encode()).hexdigest()[:12]}.npz"


def load_or_train(images: np.ndarray, labels: np.ndarray) -> DigitCNN:
    """The cached classifier for these training images, trained and cached if absent."""
    path = _cache_path(len(images))
    template = DigitCNN(jax.random.key(int(SETTINGS["seed"])))
    leaves, treedef = jax.tree_util.tree_flatten(eqx.filter(template, eqx.is_array))
    if path.exists():
        with np.load(path) as f:
            arrays = [jnp.asarray(f[f"a{j}"], jnp.float32) for j in range(len(leaves))]
        params = jax.tree_util.tree_unflatten(treedef, arrays)
        return eqx.combine(params, template)
    net = train(images, labels)
    arrays = jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_array))
    CACHE.mkdir(exist_ok=True)
    np.savez_compressed(path, **{f"a{j}": np.asarray(a, np.float16) for j, a in enumerate(arrays)})  # pyright: ignore[reportArgumentType]
    return load_or_train(images, labels)  # what later runs will see (float16 weights)


def classify(net: DigitCNN, images: np.ndarray) -> np.ndarray:
    """Predicted digits of images on ``[0, 1]`` (clipped)."""
    x = jnp.asarray(np.clip(images, 0, 1), jnp.float32)
    return np.asarray(_predict(net, x))


@eqx.filter_jit
def _predict(net: DigitCNN, x: jax.Array) -> jax.Array:
    return jnp.argmax(jax.vmap(net)(x), axis=-1)


def main() -> None:
    from models.morpho_mnist import load

    tr, te = load(), load(held_out=True)
    t0 = time.perf_counter()
    net = load_or_train(tr["image"], tr["label"])
    secs = time.perf_counter() - t0
    acc = np.mean(classify(net, te["image"]) == te["label"])
    name = _cache_path(len(tr["image"])).name
    print(f"held-out (last 500) accuracy {100 * acc:.1f} %  ({secs:.0f} s, {name})")
    # A second split, for context only: train on the first 8,500, read digits 8,500-9,500.
    if "--other-split" in __import__("sys").argv:
        other = train(tr["image"][:8500], tr["label"][:8500])
        acc2 = np.mean(classify(other, tr["image"][8500:]) == tr["label"][8500:])
        print(f"digits 8,500-9,500 (trained on the first 8,500): {100 * acc2:.1f} %")


if __name__ == "__main__":
    main()
