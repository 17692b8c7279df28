"""``narla bench --scaling``: acting and full-training throughput, and peak memory, against network size.

The networks are ``random_sparse`` CartPole networks (fan-in 16, 4 layers) of ``N`` neurons, with small (2×16)
and NaRLA-size (2×128) policies, each measured at several batch sizes ``B`` with the same two measurements as
``narla bench`` (:class:`narla.bench.EngineLoop` for acting, :func:`narla.bench.training_rate` for training).

Each (N, policy) runs in a fresh Python process, so that its peak resident memory (``ru_maxrss``) is its own, and
builds its network once (:func:`narla.bench.training_run`): every acting row ticks that engine, and every training
row trains that run from its built parameters, handed back afterwards. Within the process the batch sizes run in
increasing order, so the peak reported beside a row is the largest of that row and the rows of smaller ``B`` before
it. A configuration whose acting tick alone would take longer than ``--max-tick-s`` (estimated from the measured
matmul rate) is skipped and says so, rather than run for hours; a row whose rollout record, or that record and the
activations of its update's largest window (the training rows' ``learning.chunk_columns``,
:func:`narla.bench.training_chunk_columns`), could pass the memory available (:mod:`narla.memory`) is measured
acting only, and says why.

Writes ``scaling.json``, ``scaling.md`` and ``scaling.png`` (neuron-steps/s against N) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from narla.results import atomic_write

SIZES = (100, 1_000, 10_000, 100_000)
BATCHES = (1, 64, 256)
POLICIES = {"2x16": (16, 16), "2x128": (128, 128)}
FAN_IN = 16
QUICK = {"sizes": (50, 200), "batches": (1, 4), "policies": ("2x16",)}


def network(n: int) -> dict:
    """The scenario ``network`` section of the ``n``-neuron network."""
    return {"builder": "random_sparse", "n_neurons": n, "fan_in": FAN_IN, "layers": 4}


def estimated_tick_s(n: int, batch: int, hidden: tuple[int, ...], flops: float) -> float:
    """Seconds of one acting tick at the machine's matmul rate: 2 FLOPs per weight, per neuron and copy."""
    sizes = (FAN_IN, *hidden, 2)
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return n * batch * 2 * weights / flops


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(spec: dict) -> list[dict]:
    """Measure one (N, policy) at every batch size of ``spec``; runs in its own process (see the module doc)."""
    return list(child_rows(spec))


def child_rows(spec: dict):
    """:func:`child`, one row at a time as each is measured (the process prints each at once, so the rows of a
    process that times out or is killed later are kept)."""
    import torch._dynamo  # noqa: F401  (Adam's construction imports it, about 1 s)

    import narla.training  # noqa: F401  (both imported before the clock starts: build_s times the build alone)
    from narla.bench import Config, EngineLoop, measure, training_chunk_columns, training_rate, training_run
    from narla.memory import available_bytes, record_bytes, update_column_bytes
    from narla.neurons import Population
    from narla.readout import Readout
    from narla.tasks.cartpole import CartPole
    from narla.training import collect_options
    from narla.wiring import compile_graph

    if spec["threads"] > 0:  # 0: torch's default
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    hidden = tuple(POLICIES[spec["policy"]])
    cfg = Config(f"sparse-{spec['n']}", network(spec["n"]), hidden, tuple(spec["batches"]), ())
    start = time.perf_counter()
    if spec.get("build_only"):
        task = CartPole(1)
        readout = Readout("choice", task.action_space)
        graph = cfg.graph()
        built = time.perf_counter()
        wiring = compile_graph(graph, device)
        compiled = time.perf_counter()
        del graph
        Population(wiring, out_dim=readout.out_dim, hidden=hidden, activation="leaky_relu").to(device)
        build_s = time.perf_counter() - start
        yield {"neurons": wiring.num_neurons, "policy": spec["policy"], "edges": int(wiring.ff_mask.sum()),
               "graph_s": round(built - start, 2), "compile_s": round(compiled - built, 2),
               "population_s": round(start + build_s - compiled, 2), "build_s": round(build_s, 2),
               "peak_rss_gib": round(peak_rss_bytes() / 2**30, 2)}
        return
    # one build serves every row: acting with its engine, training with the whole run (a fresh task per B)
    run = training_run(cfg, spec["batches"][0], device)
    run.graph = None  # the compiled wiring holds what the rows need
    engine, task, wiring = run.engine, run.task, run.wiring
    build_s = time.perf_counter() - start
    for b in spec["batches"]:
        row = {"neurons": wiring.num_neurons, "policy": spec["policy"], "B": b, "build_s": round(build_s, 2)}
        tick_s = estimated_tick_s(spec["n"], b, hidden, spec["flops"])
        if tick_s > spec["max_tick_s"]:
            yield {**row, "skipped": f"an acting tick would take about {tick_s:.1f} s"}
            continue
        with torch.inference_mode():
            steps, elapsed = measure({"engine": EngineLoop(engine, b, 0)}, spec["seconds"], 1)["engine"]
        row["acting_neuron_steps_per_s"] = round(steps * wiring.num_neurons / elapsed, 1)
        record = collect_options(run, b)["record_rewards"]
        need, free = record_bytes(engine, task.obs_dim, b, task.max_episode_steps, record), available_bytes(device)
        # the activations of the update's largest window (training_rate's chunk_columns)
        window = update_column_bytes(engine) * (training_chunk_columns(engine, b, task.max_episode_steps)
                                                or b * task.max_episode_steps)
        if spec.get("training", True) and free is not None and need > free:
            # training's record could get the process killed partway through
            row["training_skipped"] = (f"its rollout record could take {need / 2**30:.1f} GiB, "
                                       f"{free / 2**30:.1f} GiB available")
        elif spec.get("training", True) and free is not None and need + window > free:
            row["training_skipped"] = (f"its rollout record ({need / 2**30:.1f} GiB) and the activations of an "
                                       f"update's window ({window / 2**30:.1f} GiB) could pass the "
                                       f"{free / 2**30:.1f} GiB available")
        elif spec.get("training", True):
            row.update(training_rate(cfg, b, device, spec["seconds"], run=run))
        row["peak_rss_gib"] = round(peak_rss_bytes() / 2**30, 2)
        if device.type == "cuda":
            row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        yield row


def run(sizes, batches, policies, seconds: float, device: str, threads: int, max_tick_s: float, flops: float,
        timeout_s: float, build_only: bool = False, training: bool = True) -> list[dict]:
    """Every (N, policy) in a fresh process; their rows (a process that fails or times out gives one row saying so).
    ``build_only``: each process only builds its network (graph, compiled wiring, population) and reports the time
    of each part and its peak memory."""
    rows = []
    for n in sizes:
        for policy in policies:
            spec = {"n": n, "policy": policy, "batches": list(batches), "seconds": seconds, "device": device,
                    "threads": threads, "max_tick_s": max_tick_s, "flops": flops, "build_only": build_only,
                    "training": training}
            print(f"scaling: N={n:,} policy {policy} ...", file=sys.stderr, flush=True)
            try:
                done = subprocess.run([sys.executable, "-m", "narla.bench_scaling", "--child", json.dumps(spec)],
                                      capture_output=True, text=True, timeout=timeout_s)
                out, code, err = done.stdout, done.returncode, done.stderr
            except subprocess.TimeoutExpired as expired:
                out, code, err = expired.stdout or "", None, ""
                out = out.decode() if isinstance(out, bytes) else out
            measured = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            rows.extend(measured)
            done_batches = {r.get("B") for r in measured}
            left = [b for b in batches if b not in done_batches] if not build_only else ([] if measured else [None])
            if code == 0 or not left:
                continue
            if code is None:
                reason = f"timed out after {timeout_s:.0f} s"
            elif code == -9:
                reason = "failed: killed (signal 9), most likely out of memory"
            else:
                reason = "failed: " + (err.strip().splitlines() or [f"exit status {code}"])[-1]
            rows.append({"neurons": n, "policy": policy, "B": ", ".join(str(b) for b in left if b is not None) or "—",
                         "skipped": reason})
    return rows


def format_markdown(rows: list[dict], info: str) -> str:
    """The rows as a markdown table."""
    lines = [
        "# narla bench --scaling",
        "",
        f"random_sparse CartPole networks (fan-in {FAN_IN}, 4 layers); {info}.",
        "Acting: tick + readout + CartPole step. Training: collect (all five rewards) + one REINFORCE update per batch",
        "(re-evaluated in windows of at most the chunk's valid columns where a batch's activations could pass 2 GiB).",
        "Peak memory: the process's resident peak after this row (batch sizes run in increasing order in one process",
        "per network and policy); on a GPU also the peak of torch's allocations there.",
        "",
        "| neurons | policy | B | build (s) | acting neuron-steps/s | training neuron-steps/s | chunk columns "
        "| peak memory |",
        "|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['neurons']:,} | {r['policy']} | {r.get('B', '—')} | {r.get('build_s', '—')} | "
                         f"skipped: {r['skipped']} | | | |")
            continue
        if "training_neuron_steps_per_s" not in r and "training_skipped" not in r:
            training, chunk = "not measured (--no-training)", "—"
        elif "training_skipped" in r:
            training, chunk = f"skipped: {r['training_skipped']}", "—"
        else:
            training = f"{r['training_neuron_steps_per_s']:,.0f}"
            chunk = r.get("training_chunk_columns")
            chunk = "—" if chunk is None else f"{chunk:,}"
        memory = f"{r['peak_rss_gib']:.2f} GiB"
        if "peak_gpu_gib" in r:
            memory += f" (GPU {r['peak_gpu_gib']:.2f} GiB)"
        lines.append(
            f"| {r['neurons']:,} | {r['policy']} | {r['B']} | {r['build_s']} | {r['acting_neuron_steps_per_s']:,.0f} | "
            f"{training} | {chunk} | {memory} |"
        )
    return "\n".join(lines) + "\n"


def format_build(rows: list[dict], info: str) -> str:
    """The rows of a ``--build-only`` run as a markdown table."""
    sizes = ",".join(str(n) for n in dict.fromkeys(r["neurons"] for r in rows))
    lines = [
        "# narla bench --scaling --build-only",
        "",
        f"Regenerate: `narla bench --scaling --build-only --sizes {sizes} --timeout 1800 --out OUT`.",
        "",
        f"Building random_sparse CartPole networks (fan-in {FAN_IN}, 4 layers); {info}. Graph: the networkx builder;",
        "compile: validation and the index tensors (`narla.wiring.compile_graph`); population: the stacked policies",
        "and the engine. Peak memory: the process's resident peak (one process per network and policy).",
        "",
        "| neurons | policy | feedforward edges | graph (s) | compile (s) | population (s) | build (s) | peak memory |",
        "|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['neurons']:,} | {r['policy']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(f"| {r['neurons']:,} | {r['policy']} | {r['edges']:,} | {r['graph_s']} | {r['compile_s']} | "
                     f"{r['population_s']} | {r['build_s']} | {r['peak_rss_gib']:.2f} GiB |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Acting and training neuron-steps/s against N, one line per (policy, B)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    measured = [r for r in rows if "skipped" not in r]
    for key, ax, title in (("acting_neuron_steps_per_s", axes[0], "acting"),
                           ("training_neuron_steps_per_s", axes[1], "full training")):
        for policy in dict.fromkeys(r["policy"] for r in measured):
            for b in sorted({r["B"] for r in measured}):
                pts = sorted((r["neurons"], r[key]) for r in measured
                             if r["policy"] == policy and r["B"] == b and key in r)
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=f"{policy}, B={b}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("neurons")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("neuron-steps/s")
    for ax in (axes[1], axes[0]):  # the training panel's legend, or the acting panel's without training rows
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
            break
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(args: argparse.Namespace, flops: float) -> int:
    """``narla bench --scaling`` (arguments from :func:`narla.bench.add_arguments`)."""
    sizes = QUICK["sizes"] if args.quick else tuple(args.sizes or SIZES)
    batches = QUICK["batches"] if args.quick else tuple(sorted(set(args.batches or BATCHES)))
    policies = QUICK["policies"] if args.quick else tuple(args.policies or POLICIES)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies or not batches or min(batches) < 1:
        print(f"narla bench: error: --policies takes {', '.join(POLICIES)} (got {','.join(policies)}); "
              f"--batches takes integers >= 1 (got {','.join(map(str, batches))})", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None else (0.1 if args.quick else 3.0)
    from narla.bench import machine_info

    info = f"{machine_info(torch.device(args.device))}; fp32 matmul {flops / 1e9:,.1f} GFLOP/s"
    rows = run(sizes, batches, policies, seconds, args.device, args.threads, args.max_tick_s, flops,
               args.timeout, args.build_only, args.training)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        atomic_write(out / "build.json", json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
        atomic_write(out / "build.md", format_build(rows, info))
        print(format_build(rows, info), end="")
        print(f"written: {out / 'build.md'}, build.json", file=sys.stderr)
        return 0
    atomic_write(out / "scaling.json", json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    atomic_write(out / "scaling.md", format_markdown(rows, info))
    plot(rows, out / "scaling.png")
    print(format_markdown(rows, info), end="")
    print(f"written: {out / 'scaling.md'}, scaling.json, scaling.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        for measured in child_rows(json.loads(sys.argv[2])):
            print(json.dumps(measured), flush=True)
        raise SystemExit(0)
    raise SystemExit("run it as: narla bench --scaling")
