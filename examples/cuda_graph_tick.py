"""Eager ticks against ticks replayed as CUDA graphs (:class:`narla.capture.GraphTick`), on a GPU.

For ``narla bench``'s networks (the NaRLA 3- and 5-layer networks with 2×128 policies, and a 10,000-neuron random
sparse one), at each ``B`` of the bench, two measurements, each interleaved between the two arms in rounds:
- the acting loop of ``narla bench`` (tick + readout + CartPole step, :class:`narla.bench.EngineLoop`), its tick
  eager or replayed; the readout and CartPole stay eager in both;
- the tick alone, on fixed inputs, eager (``Engine.tick``) or replayed.

Prints neuron-steps/s of each and their ratio. Needs CUDA. Run: ``python examples/cuda_graph_tick.py`` (about a
minute; ``--seconds`` per row and arm, default 2).
"""

import argparse
import sys
import time

import torch

from narla.bench import EngineLoop, acting_engine, configs, measure
from narla.capture import GraphTick


def tick_rate(tick, obs: torch.Tensor, prev: torch.Tensor, neurons: int, seconds: float) -> float:
    """Neuron-steps/s of ``tick(obs, prev)`` called over and over for about ``seconds``."""
    tick(obs, prev)
    torch.cuda.synchronize()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        for _ in range(10):
            tick(obs, prev)
        calls += 10
        torch.cuda.synchronize()
    return calls * obs.shape[0] * neurons / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row and arm")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("cuda_graph_tick: needs a CUDA device; none is available here", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    print(f"eager against CUDA-graph ticks; torch {torch.__version__}, {torch.cuda.get_device_name(device)}")
    print(f"{'network':14s} {'neurons':>7s} {'B':>4s}  {'loop eager':>12s} {'loop graph':>12s} {'ratio':>6s}"
          f"  {'tick eager':>13s} {'tick graph':>13s} {'ratio':>6s}   (neuron-steps/s)")
    for cfg in configs(False):
        engine = acting_engine(cfg, device)
        n = engine.num_neurons
        with torch.inference_mode():
            for b in cfg.batches:
                graph = GraphTick(engine, b)
                loops = {"eager": EngineLoop(engine, b, 0), "graph": EngineLoop(engine, b, 0, tick=graph)}
                loop = {k: steps * n / elapsed for k, (steps, elapsed) in measure(loops, args.seconds, 2).items()}
                obs, prev = loops["eager"].obs, loops["eager"].prev
                tick = {"eager": [], "graph": []}
                for _ in range(2):
                    tick["eager"].append(tick_rate(engine.tick, obs, prev, n, args.seconds / 4))
                    tick["graph"].append(tick_rate(graph, obs, prev, n, args.seconds / 4))
                te, tg = (sum(v) / len(v) for v in tick.values())
                print(f"{cfg.name:14s} {n:7,d} {b:4d}  {loop['eager']:12,.0f} {loop['graph']:12,.0f} "
                      f"{loop['graph'] / loop['eager']:5.1f}x  {te:13,.0f} {tg:13,.0f} {tg / te:5.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
