"""PettingZoo views of a neuron network: every neuron is an agent.

- :func:`aec_env` / :class:`NeuronAECEnv`: neurons act one at a time in topological order and the task
  steps after the last one (the engine's ``sweep`` propagation).
- :func:`parallel_env` / :class:`NeuronParallelEnv`: all neurons act at once on the previous tick's
  presynaptic activity (the engine's ``delay`` propagation, a one-tick synaptic delay).

Both wrap the objects :func:`narla.training.build` makes for a scenario (with one task copy): agents are
the neurons named after their graph nodes, rewards come from the scenario's reward scheme, and
``reset(seed=...)`` seeds the task. :func:`bench_steps_per_second` measures them against the engine.
"""

from narla.envs.aec import NeuronAECEnv, aec_env
from narla.envs.bench import bench_steps_per_second
from narla.envs.parallel import NeuronParallelEnv, parallel_env

__all__ = ["NeuronAECEnv", "NeuronParallelEnv", "aec_env", "bench_steps_per_second", "parallel_env"]
