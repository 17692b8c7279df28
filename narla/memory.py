"""Whether a batch's rollout record and its update fit in the machine's memory, said before training rather than by
the kernel.

A batch of ``B`` copies records, per tick: the observations, every neuron's action (one byte for spiking neurons,
:attr:`narla.engine.Engine.record_dtype`) and total reward (four bytes), a few flags per copy, and the previous task
action where the population reads it (:class:`narla.rollout.Rollout`). Over ``task.max_episode_steps`` ticks that
is the record's most, reached once the policies hold the pole for a whole episode: five bytes per neuron and
copy-tick, 64 GB for 100,000 neurons × 256 copies × 500 ticks. Where a batch's rewards alone could pass
:data:`narla.learning.reinforce.LEAN_REWARD_BYTES` and every reward term is tick-local, a REINFORCE run records no
per-tick rewards (:func:`narla.training.collect_options`) and its update scores them again window by window: one byte
per neuron and copy-tick, 12.8 GB there. A process that passes the machine's memory is killed by the kernel without
a Python error, so :func:`check_record` says it while the run starts.

The update needs memory on top of the record. :func:`check_update` says where record and update together may not fit,
counting the first two of these and the learner's gradients and optimizer state:

- a REINFORCE update's returns, standardized in place into one ``[T, B, N]`` float32 tensor (four more bytes per
  neuron and copy-tick; their temporaries stay near :data:`narla.learning.returns.COLUMN_BUDGET` elements), or, without
  recorded rewards, one scoring window's at a time (:class:`narla.learning.reinforce.WindowAdvantages`);
- the policies' activations of the columns (ticks × copies) it re-evaluates at once, all of them unless
  ``learning.chunk_ticks`` or ``learning.chunk_columns`` bounds them: about :func:`update_column_bytes` per column;
- where collection keeps the last hidden layer, that record (at most :data:`narla.hidden.RECORD_BYTES`, and no more
  than ``learning.chunk_columns`` columns where that is set).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from narla.engine import Engine
    from narla.tasks.base import Task

FLAG_BYTES = 3 + 4  # per copy-tick: first, valid and done (bool), task reward (float32)
ADVANTAGE_BYTES = 4  # per neuron and copy-tick: an update's advantages (float32 [T, B, N])
# float32 values an update keeps per neuron and re-evaluated column for its backward pass, about: per hidden unit of
# its MLPs and per input slot. Set above the peak memory an update added here (scratch runs/actmem.py, 2026-12-04,
# random sparse networks at fan-in 16, B = 64, no kept layer): 304, 840 and 1,344 bytes per neuron and column for
# 2x16, 2x64 and 2x128 policies, the advantages aside, which these estimate at 384, 960 and 1,728 (14-29 % over).
UPDATE_FLOATS_PER_HIDDEN = 1.5
UPDATE_FLOATS_PER_INPUT = 3


def record_bytes(engine: Engine, obs_dim: int, copies: int, ticks: int, rewards: bool = True) -> int:
    """Bytes of a rollout record of ``copies`` copies over ``ticks`` ticks for ``engine``'s network (``rewards``
    False: without the per-tick rewards, ``collect(..., record_rewards=False)``)."""
    spiking = engine.rate is None and not engine.whole_network
    dtype = engine.record_dtype or (torch.long if spiking else torch.float32)  # as the tick gives them otherwise
    action = torch.empty((), dtype=dtype).element_size()
    prev_action = getattr(engine.population, "action_dim", 0) * 4  # universal context's features, float32
    per_copy_tick = obs_dim * 4 + engine.num_neurons * (action + 4 * rewards) + FLAG_BYTES + prev_action
    return per_copy_tick * copies * ticks


def update_column_bytes(engine: Engine) -> int | None:
    """Bytes a gradient update keeps per re-evaluated column (one tick of one copy) for its backward pass, about:
    per neuron, :data:`UPDATE_FLOATS_PER_HIDDEN` float32 per hidden unit of its policy (and critic) and
    :data:`UPDATE_FLOATS_PER_INPUT` per input slot (read by policy and critic alike). None for a population other
    than stacked MLPs (not estimated)."""
    from narla.neurons.population import StackedMLP

    nets = [getattr(engine.population, name, None) for name in ("policy", "critic")]
    nets = [net for net in nets if isinstance(net, StackedMLP)]
    if not nets:
        return None
    hidden = sum(w.shape[2] for net in nets for w in net.weights[:-1])
    inputs = nets[0].weights[0].shape[1]  # a critic reads the same gathered inputs
    return int(4 * engine.num_neurons * (UPDATE_FLOATS_PER_HIDDEN * hidden + UPDATE_FLOATS_PER_INPUT * inputs))


def available_bytes(device: torch.device | str) -> int | None:
    """Memory free for new tensors on ``device`` now, or None where it cannot be read. CPU: ``MemAvailable`` of
    ``/proc/meminfo``, or less where a cgroup (a container, a batch job) limits the process. CUDA: the device's free
    memory plus what torch's cache holds unused."""
    device = torch.device(device)
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    if device.type != "cpu":
        return None
    free = [_meminfo_available(), _cgroup_left()]
    known = [f for f in free if f is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; None where there is none (not Linux)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _cgroup_left() -> int | None:
    """The process's cgroup limit less its usage (cgroup v2, then v1); None without a limit."""
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         (v1 + "limit_in_bytes", v1 + "usage_in_bytes")):
        try:
            with open(limit) as f:
                cap = f.read().strip()
            with open(usage) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:  # "max" (v2) or a huge number (v1): no limit
            return max(0, int(cap) - used)
    return None


def check_record(
    engine: Engine, task: Task, copies: int | None = None, ticks: int | None = None, upfront: bool = False,
    rewards: bool = True,
) -> None:
    """Check that a batch's record of ``copies`` copies (default ``task.num_envs``) over ``ticks`` ticks (default
    ``task.max_episode_steps``) fits in the memory available now.

    ``rewards`` False: the record holds no per-tick rewards (``collect(..., record_rewards=False)``).
    ``upfront``: the record is allocated whole before the first tick (:mod:`narla.runs`), so a record that does not
    fit raises ``MemoryError``. Otherwise it grows tick by tick and reaches its most only in episodes that long, so a
    record that may not fit warns (``RuntimeWarning``). Both name the settings that size it.
    """
    copies = task.num_envs if copies is None else copies
    ticks = task.max_episode_steps if ticks is None else ticks
    need = record_bytes(engine, task.obs_dim, copies, ticks, rewards)
    free = available_bytes(engine.device)
    if free is None or need <= free:
        return
    message = (f"task.num_envs: the rollout record of {copies:,} copies x {engine.num_neurons:,} neurons over "
               f"{ticks:,} ticks (task.max_episode_steps) takes {need / 2**30:.1f} GiB, and {free / 2**30:.1f} GiB "
               f"of {engine.device.type} memory is available now; lower task.num_envs, the network's size or "
               f"task.max_episode_steps")
    if upfront:
        raise MemoryError(message)
    warnings.warn(message + " (it reaches that size only in episodes that long)", RuntimeWarning, stacklevel=2)


def check_update(engine: Engine, task: Task, learner, rewards: bool = True) -> None:
    """Warn (``RuntimeWarning``) where a batch over ``task.max_episode_steps`` ticks could not fit with its update,
    against the memory available now: the record, the advantages (:data:`ADVANTAGE_BYTES`), the gradients and Adam's
    two moments of the learner's parameters (made at its first step), and the activations of the most columns the
    update re-evaluates at once (``learner.max_columns(copies, ticks)``, :func:`update_column_bytes` each). A kept
    hidden layer's record (:mod:`narla.hidden`) is not counted. The message names the setting that bounds the
    activations: ``learning.chunk_columns`` (or ``learning.chunk_ticks``, where that is the one set and a tick of every
    copy fits; else ``chunk_columns`` in its place) with the most that fits, else (not one column fits beside the
    record) ``task.num_envs``. Learners without ``max_columns``
    (evolution strategies: no backward pass) and populations :func:`update_column_bytes` does not estimate are not
    checked. ``rewards`` False: the batch records no per-tick rewards, and the update holds one scoring window's
    advantages at a time (not counted)."""
    per_column = update_column_bytes(engine)
    max_columns = getattr(learner, "max_columns", None)
    free = available_bytes(engine.device)
    if per_column is None or max_columns is None or free is None:
        return
    copies, ticks = task.num_envs, task.max_episode_steps
    record = record_bytes(engine, task.obs_dim, copies, ticks, rewards)
    advantages = ADVANTAGE_BYTES * engine.num_neurons * copies * ticks if rewards else 0  # else window by window
    state = 3 * sum(p.numel() * p.element_size() for p in getattr(learner, "params", []))  # grads, Adam's moments
    columns = max_columns(copies, ticks)
    activations = per_column * columns
    fixed = record + advantages + state
    if fixed + activations <= free:
        return
    gib = 2**30
    said = (f"an update could re-evaluate {columns:,} columns (ticks x copies) at once, whose activations take about "
            f"{activations / gib:.1f} GiB, beside the batch's record ({record / gib:.1f} GiB) and advantages "
            f"({advantages / gib:.1f} GiB) over {ticks:,} ticks (task.max_episode_steps) and the gradients and "
            f"optimizer state ({state / gib:.1f} GiB); {free / gib:.1f} GiB of {engine.device.type} memory is "
            f"available now")
    room = max(0, free - fixed) // per_column
    if getattr(learner, "chunk_ticks", None) is not None and room >= copies:
        said = f"learning.chunk_ticks: {said}; set learning.chunk_ticks to at most {room // copies:,}"
    elif hasattr(learner, "chunk_columns") and room >= 1:
        instead = " instead of learning.chunk_ticks" if getattr(learner, "chunk_ticks", None) is not None else ""
        said = f"learning.chunk_columns: {said}; set learning.chunk_columns to at most {room:,}{instead}"
    else:
        said = f"task.num_envs: {said}; lower task.num_envs, the network's size or task.max_episode_steps"
    warnings.warn(said + " (a batch reaches that size only in episodes that long)", RuntimeWarning, stacklevel=2)
