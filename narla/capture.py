"""One engine tick of ``B`` copies captured as a CUDA graph and replayed, for networks too small to fill a GPU.

A tick of the NaRLA networks is a few hundred small kernels; on a GPU their launches, not their arithmetic, set
its time (``docs/results/bench/gpu/``: 25,030 neuron-steps/s for the 5-layer network at B = 1 on an H200, below
this project's 2-core CPU). :class:`GraphTick` records :meth:`narla.engine.Engine.bernoulli_tick` once into a
``torch.cuda.CUDAGraph`` and then launches the whole tick as one graph: on an H200, the NaRLA networks' ticks ran
3.6-5.4× faster so (``python examples/cuda_graph_tick.py``), while a 10,000-neuron network at B = 64, bound by its
arithmetic, gained nothing. Training's collection (:func:`narla.rollout.collect`) replays its full-width ticks so
(:func:`graph_tick` keeps one per engine and batch size), and, in batches of at most
:data:`narla.rollout.GRAPH_WHOLE_BATCH` neuron-copies, also once the finished copies are dropped (their columns
zeroed after the replay): full training of the 5-layer network ran 1.9-2.4× faster on an H200 at B = 1-256
(``python examples/cuda_graph_collect.py``).

What a replay does, and why:
- Its inputs are copied into static buffers: the observations ``[B, obs_dim]``, the previous activity
  ``[S + N, B]``, and the tick's uniforms ``[N, B]``. The uniforms are drawn *outside* the graph, on the engine's
  generator, so the graph holds no random-number state of its own: the numbers the eager tick draws, one
  ``torch.rand`` per stage (:meth:`narla.engine.Engine._tick_uniforms`).
- So from the same generator state a replay's spikes are the eager tick's bit for bit: the same uniforms and the
  same kernels on the same data (``tests/test_capture.py``, on CUDA), and a collection's valid ticks are the same
  with or without graphs.
- The graph reads the parameters' storage. Updates in place (the optimizers') are seen by the next replay; a
  parameter that moves to new storage (``.to()``, a batch of runs restacking) makes the next call capture again.
- It returns copies of the graph's outputs, which the next replay overwrites.
- It holds its engine weakly: the engine keeps its graphs (``engine.graph_ticks``), and a strong reference back would
  make a cycle that keeps a dropped engine's parameters and graph memory on the GPU until Python's cycle collector
  runs. Whoever makes a ``GraphTick`` keeps its engine alive.

Only full-width feedforward Bernoulli ticks are captured (:attr:`~narla.engine.Engine.capturable`, no compacted
columns, no kept hidden layer: the CUDA tick keeps none).
"""

from __future__ import annotations

import weakref

import torch

from narla.engine import Engine


class GraphTick:
    """``engine.tick`` for ``batch`` copies as one CUDA graph (see the module doc): ``act, actions = tick(obs,
    prev)`` with ``obs[B, obs_dim]`` and ``prev[S + N, B]``, as :meth:`narla.engine.Engine.tick` takes them."""

    def __init__(self, engine: Engine, batch: int, warmup: int = 3) -> None:
        if engine.device.type != "cuda":
            raise ValueError(f"GraphTick: the engine is on {engine.device}; CUDA graphs need a cuda device")
        if not engine.capturable:
            raise ValueError("GraphTick: only a feedforward population of Bernoulli neurons without interventions, "
                             "drawing from the engine's generator, is captured (Engine.capturable is False)")
        if batch < 1:
            raise ValueError(f"GraphTick: batch must be at least 1, got {batch}")
        self._engine = weakref.ref(engine)  # see the module doc
        self.batch, self.warmup = batch, warmup
        device = engine.device
        self.obs: torch.Tensor | None = None  # [B, obs_dim], made on the first call
        with torch.inference_mode(False):  # ordinary tensors: written in place in and out of inference mode
            self.prev = torch.zeros(engine.num_sensors + engine.num_neurons, batch, device=device)
            self.u = torch.zeros(engine.num_neurons, batch, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = 0

    @property
    def engine(self) -> Engine:
        """The engine whose tick this replays (held weakly; see the module doc)."""
        engine = self._engine()
        if engine is None:
            raise RuntimeError("GraphTick: its engine no longer exists (a GraphTick holds its engine weakly)")
        return engine

    def _storage(self) -> tuple[int, ...]:
        """Where the graph reads the parameters and the stages' input indices (``Engine.trim_padding`` makes new
        ones): a change means the next call captures again."""
        engine = self.engine
        return (*(p.data_ptr() for p in engine.population.parameters()),
                *(idx.data_ptr() for idx, *_ in engine._gathers.values()))

    def _capture(self) -> None:
        """Warm up on a side stream (lazy initialisation stays out of the graph), then record one tick."""
        engine = self.engine
        stream = torch.cuda.Stream(device=engine.device)
        stream.wait_stream(torch.cuda.current_stream(engine.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(self.warmup):
                engine.bernoulli_tick(self.obs, self.prev, self.u)
        torch.cuda.current_stream(engine.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.act, self.actions = engine.bernoulli_tick(self.obs, self.prev, self.u)
        self.storage = self._storage()
        self.captures += 1

    def __call__(self, obs: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick: ``act[S + N, B]`` and ``actions[N, B]`` (long), new tensors."""
        if obs.shape[0] != self.batch:
            raise ValueError(f"GraphTick: captured for {self.batch} copies, got observations of {obs.shape[0]}")
        if prev.shape != self.prev.shape:
            raise ValueError(f"GraphTick: prev must be [S + N, B] = {list(self.prev.shape)}, got {list(prev.shape)}")
        if self.engine.columns is not None:
            raise ValueError("GraphTick: the engine is set to a subset of the copies (Engine.columns); only "
                             "full-width ticks are captured")
        with torch.cuda.device(self.engine.device):
            if self.obs is None or self.obs.shape != obs.shape:
                with torch.inference_mode(False):
                    self.obs, self.graph = torch.zeros_like(obs), None
            if self.graph is None or self._storage() != self.storage:
                self._capture()
            self.obs.copy_(obs)
            self.prev.copy_(prev)
            self.u.copy_(self.engine._tick_uniforms(self.batch))
            self.graph.replay()
            return self.act.clone(), self.actions.clone()


def graph_tick(engine: Engine, batch: int) -> GraphTick | None:
    """The engine's :class:`GraphTick` for ``batch`` copies, made on first use and kept while the engine lives; None
    where its tick cannot be captured (:attr:`~narla.engine.Engine.capturable`: off CUDA, or not a feedforward
    Bernoulli tick). They live in ``engine.graph_ticks``."""
    if not engine.capturable:
        return None
    if batch not in engine.graph_ticks:
        engine.graph_ticks[batch] = GraphTick(engine, batch)
    return engine.graph_ticks[batch]
