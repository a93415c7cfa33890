"""W9: queries and a fit over N processes joined by ``jax.distributed`` (CPU collectives).

    .venv/bin/python -m benchmarks.multiprocess [processes] [units per process]

The launcher starts N worker processes on localhost (coordinator on a free port); each
holds its own units of the evidence, and together they form one global array sharded
over the processes' devices along the unit axis. Every worker runs the same exact
``counterfactual`` (latent confounder, evidence on ``X`` and ``Y``, do(X := 0)) and
writes its own units' answer; the launcher compares the stitched answer with one
process running the same query on all units, and with the closed form. Then every worker
fits a mechanism on its own rows (``scm_ppl.learn.shard_rows`` joins them; gradients are
all-reduced over the processes) and the launcher checks that the fitted parameters after
1, 2 and 3 epochs are those of one process fitting all rows, to float round-off. On a GPU cluster
the same worker code runs with ``jax.distributed.initialize()`` reading the cluster's
own coordinator settings (SLURM, Open MPI) instead of the localhost arguments.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def _evidence(total: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=total).astype(np.float32)
    return {"X": x, "Y": (0.5 * x + rng.normal(size=total)).astype(np.float32)}


GRID = (-1.0, 0.0, 1.0)


def _answer(evidence, n):
    import jax

    from models import latent_confounder as lc
    from scm_ppl import counterfactual

    result = counterfactual(
        lc.model, evidence, {"X": 0.0}, rng_key=jax.random.key(0), model_args=(n,)
    )
    return result.world("cf")["Y"], result.method


def _dose_response(evidence, n):
    """The mean counterfactual ``Y`` over all units (of every process) for each ``X`` of
    :data:`GRID`: a reduction over the sharded unit axis."""
    import jax

    from models import latent_confounder as lc
    from scm_ppl import dose_response

    curve = dose_response(lc.model, evidence, "X", list(GRID), "Y", rng_key=jax.random.key(1),
                          model_args=(n,))  # fmt: skip
    return np.asarray(curve.mean)


def _interventional(evidence, n):
    """Draws of ``U`` given ``Y`` in the world ``do(X := 0)``, per unit (sharded)."""
    import jax

    from models import latent_confounder as lc
    from scm_ppl import interventional

    result = interventional(
        lc.model,
        {"X": 0.0},
        evidence={"Y": evidence["Y"]},
        rng_key=jax.random.key(2),
        num_samples=200,
        model_args=(n,),
    )
    return result.world("do")["U"], result.method


def _per_unit_nuts(evidence, n):
    """Draws of the counterfactual ``Y`` under do(X := 0) given ``X`` only, by one NUTS
    chain per unit (the units' latents ``U`` and ``Y`` separate), over the sharded units."""
    import jax

    from models import latent_confounder as lc
    from scm_ppl import counterfactual

    result = counterfactual(
        lc.model, {"X": evidence["X"]}, {"X": 0.0}, rng_key=jax.random.key(3),
        method="per_unit_nuts", num_samples=400, num_warmup=400, model_args=(n,),
    )  # fmt: skip
    return result.world("cf")["Y"]


FIT_EPOCHS = (1, 2, 3)


def _fit_rows(total: int) -> dict[str, np.ndarray]:
    """Rows of :mod:`models.latent_mechanism` (``Y = beta X + w U + s e``, ``U`` latent:
    integrated out by importance sampling; a prior on ``beta``, outside the unit plate)."""
    from models import latent_mechanism

    return latent_mechanism.rows(total, seed=1)


def _fits(rows, total: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(w, s, beta)`` after each number of epochs in :data:`FIT_EPOCHS` (minibatches of a
    quarter of the rows: 4 steps an epoch), the losses of the longest fit, and the time of
    the fits (the first compiles)."""
    import jax

    from models import latent_mechanism
    from scm_ppl import fit

    out, losses = [], np.zeros(0)
    start = time.perf_counter()
    for epochs in FIT_EPOCHS:
        fitted = fit(latent_mechanism.model, rows, latent="U", batch_size=total // 4,
                     num_epochs=epochs, num_particles=4, learning_rate=0.05,
                     validation_fraction=0.0, rng_key=jax.random.key(3),
                     progress=False)  # fmt: skip
        p = fitted.params
        out.append([float(p["w"]), float(p["s"]), float(fitted.point["beta"])])
        losses = fitted.losses
    return np.array(out), np.asarray(losses), time.perf_counter() - start


def _local(array) -> np.ndarray:
    """This process's units of a global array sharded along its last axis."""
    shards = sorted(array.addressable_shards, key=lambda s: s.index[-1].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards], axis=-1)


def worker(rank: int, processes: int, port: int, per: int, out: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", processes, rank)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    total = per * processes
    full = _evidence(total)
    mesh = Mesh(np.array(jax.devices()), ("unit",))
    sharding = NamedSharding(mesh, PartitionSpec("unit"))
    mine = slice(rank * per, (rank + 1) * per)
    evidence = {
        k: jax.make_array_from_process_local_data(sharding, v[mine], (total,))
        for k, v in full.items()
    }
    start = time.perf_counter()
    y, method = _answer(evidence, total)
    local = _local(y)
    seconds = time.perf_counter() - start
    curve = _dose_response(evidence, total)
    u, u_method = _interventional(evidence, total)
    y_nuts = _local(_per_unit_nuts(evidence, total))
    from scm_ppl.learn import shard_rows

    fit_rows = {k: v[mine] for k, v in _fit_rows(total).items()}  # this process's rows only
    fitted, fit_losses, fit_seconds = _fits(shard_rows(fit_rows), total)
    np.savez(os.path.join(out, f"rank{rank}.npz"), y=local, seconds=seconds, method=method,
             curve=curve, u=_local(u), u_method=u_method, fit=fitted, fit_losses=fit_losses,
             fit_seconds=fit_seconds, y_nuts=y_nuts)  # fmt: skip
    jax.distributed.shutdown()


def main(processes: int = 2, per: int = 50_000) -> dict[str, float]:
    """Run the workers and the one-process reference; the largest gaps of each query to
    one process and to the closed form."""
    from models import latent_confounder as lc

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.multiprocess",
                    "--worker",
                    str(r),
                    str(processes),
                    str(port),
                    str(per),
                    out,
                ],
                env=env,
            )
            for r in range(processes)
        ]
        codes = [p.wait(timeout=600) for p in procs]
        wall = time.perf_counter() - start
        assert codes == [0] * processes, f"worker exit codes {codes}"
        parts = [np.load(os.path.join(out, f"rank{r}.npz")) for r in range(processes)]
    y = np.concatenate([p["y"] for p in parts], axis=-1)
    total = per * processes
    ev = _evidence(total)
    one = np.asarray(_answer(ev, total)[0])
    truth = lc.counterfactual_y(ev["X"], ev["Y"], 0.0).mean
    print(f"counterfactual, method {parts[0]['method']}; {processes} processes x {per:,} "
          f"units: wall {wall:.1f} s (start-up included), "
          f"query {max(float(p['seconds']) for p in parts) * 1e3:.1f} ms (first call); "
          f"max |N-process - 1-process| {np.max(np.abs(y - one)):.2e}, "
          f"max |N-process - closed form| {np.max(np.abs(y - truth)):.2e}")  # fmt: skip
    # dose_response: the mean over all units, y + BETA (x' - x) averaged (exact)
    curve_one = _dose_response(ev, total)
    curve_truth = np.array([np.mean(lc.counterfactual_y(ev["X"], ev["Y"], v).mean) for v in GRID])
    curves = [p["curve"] for p in parts]
    curve_gap = max(float(np.max(np.abs(c - curve_one))) for c in curves)
    print(f"dose_response over {len(GRID)} values: max |N-process - 1-process| "
          f"{curve_gap:.2e}, max |N-process - closed form| "
          f"{max(float(np.max(np.abs(c - curve_truth))) for c in curves):.2e}")  # fmt: skip
    # interventional given Y in do(X := 0): U | y is Gaussian, precision 1/SIGMA_U^2 +
    # GAMMA^2/SIGMA_Y^2, mean v GAMMA y / SIGMA_Y^2. Joint NUTS over sharded units follows
    # another trajectory than one process (reductions in another order), so the draws are
    # compared with the closed form, per unit, in Monte-Carlo standard errors.
    u = np.concatenate([p["u"] for p in parts], axis=-1)
    u_one = np.asarray(_interventional(ev, total)[0])
    v = 1.0 / (1.0 / lc.SIGMA_U**2 + lc.GAMMA**2 / lc.SIGMA_Y**2)
    mean = v * lc.GAMMA * ev["Y"] / lc.SIGMA_Y**2

    def rms_z(draws: np.ndarray) -> float:
        flat = draws.reshape(-1, draws.shape[-1])
        z = (flat.mean(axis=0) - mean) / np.sqrt(v / flat.shape[0])
        return float(np.sqrt(np.mean(z**2)))

    print(f"interventional with evidence, method {parts[0]['u_method']}: per-unit posterior "
          f"means against the closed form, rms z {rms_z(u):.2f} ({processes} processes), "
          f"{rms_z(u_one):.2f} (1 process)")  # fmt: skip
    # counterfactual by per-unit NUTS given X only: Y_0 | x is Gaussian (closed form);
    # each unit's chain is its own, so the processes' draws are judged as one process's.
    y_nuts = np.concatenate([p["y_nuts"] for p in parts], axis=-1)
    y_nuts_one = np.asarray(_per_unit_nuts(ev, total))
    given_x = lc.counterfactual_y_given_x(ev["X"], 0.0)

    def z_y(draws: np.ndarray) -> np.ndarray:
        flat = draws.reshape(-1, draws.shape[-1])
        return (flat.mean(axis=0) - given_x.mean) / np.sqrt(given_x.var / flat.shape[0])

    def rms_z_y(draws: np.ndarray) -> float:
        return float(np.sqrt(np.mean(z_y(draws) ** 2)))

    nuts_gap = float(np.max(np.abs(y_nuts - y_nuts_one)))
    print(f"counterfactual by per-unit NUTS given X: max |N-process - 1-process| {nuts_gap:.2e}; "
          f"per-unit means against the closed form, rms z {rms_z_y(y_nuts):.2f} "
          f"({processes} processes), {rms_z_y(y_nuts_one):.2f} (1 process)")  # fmt: skip
    # fit: every process holds its rows; the N-process fit must take the steps one
    # process takes on the concatenated rows (same minibatches, same draws of U).
    fit_one, losses_one, fit_seconds = _fits(_fit_rows(total), total)
    fit_gap = max(
        float(np.max(np.abs(p["fit"] - fit_one) / np.maximum(np.abs(fit_one), 1e-3))) for p in parts
    )
    loss_gap = max(
        float(np.max(np.abs(p["fit_losses"] - losses_one) / np.abs(losses_one))) for p in parts
    )
    print(f"fit (map, latent U, {FIT_EPOCHS[-1]} epochs x 4 minibatches): max relative "
          f"|N-process - 1-process| of (w, s, beta) after {FIT_EPOCHS} epochs {fit_gap:.1e}, "
          f"of the epoch losses {loss_gap:.1e}; the {len(FIT_EPOCHS)} fits "
          f"{max(float(p['fit_seconds']) for p in parts):.2f} s ({processes} processes), "
          f"{fit_seconds:.2f} s (1 process), one compilation included")  # fmt: skip
    return {
        "fit": fit_gap,
        "fit losses": loss_gap,
        "counterfactual": float(np.max(np.abs(y - one))),
        "counterfactual vs closed form": float(np.max(np.abs(y - truth))),
        "dose_response": curve_gap,
        "dose_response vs closed form": max(float(np.max(np.abs(c - curve_truth))) for c in curves),
        "interventional rms z": rms_z(u),
        "interventional rms z, 1 process": rms_z(u_one),
        "per-unit nuts": nuts_gap,
        "per-unit nuts rms z": rms_z_y(y_nuts),
        "per-unit nuts rms z, 1 process": rms_z_y(y_nuts_one),
        "per-unit nuts mean z": float(np.mean(z_y(y_nuts))),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*(int(a) for a in sys.argv[2:6]), sys.argv[6])  # type: ignore[arg-type]
    else:
        main(*(int(a) for a in sys.argv[1:3]))
