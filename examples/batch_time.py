"""Where a training batch's time goes: its ticks by width, beside what their products alone cost.

Trains ``narla bench``'s 5-layer training row (the NaRLA 5-layer network, 2×128 policies, all five rewards,
REINFORCE, CartPole) at ``--batch`` copies for ``--batches`` batches after two warm-up ones, as the bench's
training loop does, and times the collection and the update of each batch, and within collection each tick and
each tick's end (readout, CartPole step, the record) by the number of copies the tick computed (finished copies
are dropped as soon as their episode ends, so late ticks are narrow). Beside each width it prints that width's
floor: every stage's policy products and activations alone (``StackedMLP.act`` on random inputs, one tick's worth,
repeated), and it ends with the batch's rate against ``narla bench``'s limit (the machine's large product over four
forward passes), and the rate a batch would reach if only its matrix products cost time: collection's, width by width,
and the update's (:func:`update_products_alone`). Run: ``python examples/batch_time.py [--batch 64] [--threads 2 1]``
(one report per thread count, about 15 s each).
"""

import argparse
import statistics
import time
from collections import defaultdict

import torch

import narla.rollout as rollout_module
from narla.bench import configs, machine_info, matmul_flops, training_run, weights_per_neuron
from narla.rollout import collect

BINS = ((1, 4), (5, 8), (9, 16), (17, 32), (33, 63), (64, 255), (256, 1 << 30))


def timed_batches(batch: int, batches: int) -> tuple[dict, list[tuple[float, float, int, bool]], object]:
    """Per tick width, ``{"tick": [s, ...], "end": [s, ...]}`` over ``batches`` batches, and per batch
    ``(collect s, update s, valid copy-ticks, whether acting kept the last hidden layer)``; the run trained."""
    cfg = next(c for c in configs(False) if c.name == "narla-5layer")
    run = training_run(cfg, batch, torch.device("cpu"))
    learner = run.learner
    for _ in range(2):  # warm-up: caches, the allocator, Adam's state
        learner.update(collect(run.engine, run.task, run.scheme, keep_hidden=learner.keeps_hidden))
    widths: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"tick": [], "end": []})
    tick, finish = rollout_module._tick, rollout_module.finish_tick
    width = [batch]

    def timed_tick(engine, obs, carry, active, *args, **kwargs):
        width[0] = obs.shape[0] if active is None else active.numel()
        begin = time.perf_counter()
        out = tick(engine, obs, carry, active, *args, **kwargs)
        widths[width[0]]["tick"].append(time.perf_counter() - begin)
        return out

    def timed_finish(*args, **kwargs):
        begin = time.perf_counter()
        out = finish(*args, **kwargs)
        widths[width[0]]["end"].append(time.perf_counter() - begin)
        return out

    rollout_module._tick, rollout_module.finish_tick = timed_tick, timed_finish
    phases = []
    try:
        for _ in range(batches):
            begin = time.perf_counter()
            rollout = collect(run.engine, run.task, run.scheme, keep_hidden=learner.keeps_hidden)
            collected = time.perf_counter()
            kept = rollout.hidden is not None
            learner.update(rollout)
            phases.append((collected - begin, time.perf_counter() - collected, int(rollout.valid.sum()), kept))
    finally:
        rollout_module._tick, rollout_module.finish_tick = tick, finish
    return dict(widths), phases, run


@torch.inference_mode()
def products_alone(run, cols: int, repeats: int = 200) -> float:
    """Seconds for every stage's policy products and activations at ``cols`` copies (one tick's worth, mean of
    ``repeats`` after a warm-up): the tick's floor at that width."""
    engine, policy = run.engine, run.engine.population.policy
    policy.check_acting_rows()
    inputs = [(torch.rand(end - start, engine.stage_fan(start, end), cols), start, end) for start, end in engine.stages]

    def one_tick() -> None:
        for x, start, end in inputs:
            policy.act(x, start, end)

    for _ in range(10):
        one_tick()
    begin = time.perf_counter()
    for _ in range(repeats):
        one_tick()
    return (time.perf_counter() - begin) / repeats


@torch.inference_mode()
def update_products_alone(run, cols: int, kept: bool, repeats: int = 20) -> float:
    """Seconds for the matrix products alone of one update over ``cols`` valid columns, stage by stage (mean of
    ``repeats`` after a warm-up): its forward pass (without the last hidden layer's product when ``kept``: acting kept
    that layer) and its backward pass (each layer's weight gradient, and the gradient of every layer's input but the
    first's), on random tensors of the update's shapes, without activations, biases or the optimizer: the update's
    floor."""
    engine, weights = run.engine, list(run.engine.population.policy.weights)
    last = len(weights) - 1
    stages = []
    for start, end in engine.stages:
        n, fan = end - start, engine.stage_fan(start, end)
        ws = [w[start:end, :fan] if i == 0 else w[start:end] for i, w in enumerate(weights)]
        hs = [torch.rand(n, cols, w.shape[1]) for w in ws]  # each layer's input [n, cols, in]
        gs = [torch.rand(n, cols, w.shape[2]) for w in ws]  # the gradient of each layer's output [n, cols, out]
        stages.append((ws, hs, gs))

    def one_update() -> None:
        for ws, hs, gs in stages:
            for layer, (w, h, g) in enumerate(zip(ws, hs, gs, strict=True)):
                if not (kept and layer == last - 1):
                    torch.bmm(h, w)  # forward
                torch.bmm(h.transpose(1, 2), g)  # dW = h^T g
                if layer > 0:
                    torch.bmm(g, w.transpose(1, 2))  # dh = g W^T

    one_update()
    begin = time.perf_counter()
    for _ in range(repeats):
        one_update()
    return (time.perf_counter() - begin) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="one report per thread count")
    args = parser.parse_args()
    for threads in args.threads:
        report(args.batch, args.batches, threads)


def report(batch: int, batches: int, threads: int) -> None:
    """Train ``batches`` batches of ``batch`` copies on ``threads`` threads and print where their time went."""
    torch.set_num_threads(threads)
    widths, phases, run = timed_batches(batch, batches)
    n = batches
    collect_s = sum(p[0] for p in phases) / n
    update_s = sum(p[1] for p in phases) / n
    batch_s = collect_s + update_s
    neurons = run.engine.num_neurons
    print(f"NaRLA 5-layer network ({neurons} neurons, 2x128 policies), B = {batch}, {n} batches after 2 warm-up ones; "
          f"{time.strftime('%Y-%m-%d')}, {machine_info(torch.device('cpu'))}")
    print(f"batch: collection {collect_s * 1e3:.1f} ms + update {update_s * 1e3:.1f} ms (medians "
          f"{statistics.median(p[0] for p in phases) * 1e3:.1f} + {statistics.median(p[1] for p in phases) * 1e3:.1f})")
    print()
    print("| copies computed | ticks a batch | tick (µs) | products alone (µs) | tick's end (µs) "
          "| ms a batch | share of the batch |")
    print("| --- | --: | --: | --: | --: | --: | --: |")
    in_ticks = collect_floor = 0.0
    for lo, hi in BINS:
        held = [w for w in widths if lo <= w <= hi]
        if not held:
            continue
        ticks = [s for w in held for s in widths[w]["tick"]]
        ends = [s for w in held for s in widths[w]["end"]]
        typical = round(statistics.median(w for w in held for _ in widths[w]["tick"]))
        spent = (sum(ticks) + sum(ends)) / n
        in_ticks += spent
        label = f"{lo}-{min(hi, batch)}" if lo < min(hi, batch) else f"{lo}"
        alone = products_alone(run, typical)
        collect_floor += alone * len(ticks) / n
        print(f"| {label} | {len(ticks) / n:.1f} | {statistics.mean(ticks) * 1e6:,.0f} | "
              f"{alone * 1e6:,.0f} (at {typical}) | {statistics.mean(ends) * 1e6:,.0f} | "
              f"{spent * 1e3:.1f} | {spent / batch_s:.0%} |")
    print(f"| rest of collection (scoring, stacking, checks) | | | | | {(collect_s - in_ticks) * 1e3:.1f} | "
          f"{(collect_s - in_ticks) / batch_s:.0%} |")
    print(f"| update | | | | | {update_s * 1e3:.1f} | {update_s / batch_s:.0%} |")
    valid = round(statistics.mean(p[2] for p in phases))
    kept = all(p[3] for p in phases)
    update_floor = update_products_alone(run, valid, kept)
    flops = matmul_flops(torch.device("cpu"))
    limit = flops / (4 * 2 * weights_per_neuron(run.engine.population, neurons))
    rate = sum(p[2] for p in phases) * neurons / sum(p[0] + p[1] for p in phases)
    print()
    print(f"training {rate:,.0f} neuron-steps/s; limit {limit:,.0f} (fp32 matmul {flops / 1e9:.1f} GFLOP/s after the "
          f"batches): {rate / limit:.1%}")
    floor_s = collect_floor + update_floor
    print(f"products alone: collection {collect_floor * 1e3:.1f} ms + update {update_floor * 1e3:.1f} ms (its "
          f"{valid:,} valid columns{', the kept layer not recomputed' if kept else ''}) = {floor_s * 1e3:.1f} ms a "
          f"batch, {valid * neurons / floor_s:,.0f} neuron-steps/s: {valid * neurons / floor_s / limit:.1%} of the "
          f"limit if nothing but the products cost time")
    print()


if __name__ == "__main__":
    main()
