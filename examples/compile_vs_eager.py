"""Does ``torch.compile`` pay for a neuron stage on this machine? Times one stage's forward pass, eager and compiled.

The stage is the first hidden layer of a real network (its gathered inputs, its population's forward: MLP,
soft bound), on the NaRLA 5-layer network (2×128 policies) at B = 64 and 256 and on the paper's Table 1 network
(1×32 policies, softmax head) at B = 1. Run: ``python examples/compile_vs_eager.py`` (about a minute; it needs a C++
compiler for inductor). Prints one line per case: eager µs, compiled µs, compile seconds.
"""

import time

import torch

from narla.rollout import start_carry
from narla.scenario import from_dict, load
from narla.training import build


def stage_call(scenario, batch: int):
    """The population's forward on the first stage's real inputs, and the call's arguments."""
    run = build(scenario)
    engine = run.engine
    obs = torch.randn(batch, run.task.obs_dim)
    carry = start_carry(engine, batch)
    act = engine.begin_tick(obs)
    start, end = engine.stages[0]
    x, c = engine.stage_inputs(act, carry.prev, start, end)
    return engine.population, (x, c, start, end)


def per_call_us(fn, args, calls: int) -> float:
    for _ in range(20):
        fn(*args)
    begin = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - begin) / calls * 1e6


def main() -> None:
    torch.set_num_threads(1)
    narla5 = {"name": "compile_check", "seed": 0, "task": {"id": "cartpole", "num_envs": 1},
              "network": {"builder": "layered", "width": 15, "connectivity": "local", "layers": 5},
              "neuron": {"hidden": [128, 128], "activation": "leaky_relu"}}
    cases = [("NaRLA 5 layers, 2x128", from_dict(narla5), 64), ("NaRLA 5 layers, 2x128", from_dict(narla5), 256),
             ("Table 1 paper all_L2", load("scenarios/table1/paper/all_L2.yaml"), 1)]
    with torch.no_grad():
        for name, scenario, batch in cases:
            population, args = stage_call(scenario, batch)
            eager = per_call_us(population, args, 500)
            begin = time.perf_counter()
            compiled = torch.compile(population, dynamic=False)
            compiled(*args)
            compile_s = time.perf_counter() - begin
            fast = per_call_us(compiled, args, 500)
            print(f"{name}, B = {batch}: eager {eager:.1f} us, compiled {fast:.1f} us ({eager / fast:.2f}x), "
                  f"compile {compile_s:.1f} s", flush=True)


if __name__ == "__main__":
    main()
