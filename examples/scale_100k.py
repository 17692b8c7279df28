"""Train a 100,000-neuron network on CartPole and report its rates and peak memory (issue: scale).

The network of ``narla bench --scaling`` (random sparse, fan-in 16, 4 layers, 2×16 policies) at B = 64, in this
process, with all five rewards (``narla.bench.REWARDS``): one batch of collection and one REINFORCE update after
a warm-up batch. Run: ``python examples/scale_100k.py`` (about 10 min on a 2-core CPU, about 13 GiB).
"""

import json

from narla.bench_scaling import child

if __name__ == "__main__":
    spec = {"n": 100_000, "policy": "2x16", "batches": [64], "seconds": 1, "device": "cpu", "threads": 1,
            "max_tick_s": 5, "flops": 169e9}
    print(json.dumps(child(spec), indent=2))
