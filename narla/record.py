"""Recording episodes of a learned policy: ``narla record RUN_DIR --episodes N [--out FILE.npz]``.

The policy of ``RUN_DIR`` plays ``N`` episodes (as ``narla eval`` replays it) with the run's own reward scheme,
and every tick is kept. The ``.npz`` holds, padded to the longest episode ``T`` (``length`` says how many ticks of
each episode are real):

- ``spikes [E, T, N]``: each neuron's activity; ``obs [E, T, obs_dim]``: the observation each tick acted on;
  ``task_action [E, T, A]``: the action sent to the task (a discrete action as one float);
- ``task_reward [E, T]``; ``reward [E, T, N]``: each neuron's total reward; ``reward_<label> [E, T, N]``: each
  term of the scheme (the last phase's terms: a trained network);
- ``length [E]``; ``neuron_names [N]``, ``layer [N]`` (1-based), ``motor [N]``; ``components``: the term labels.

Recomputing rewards needs the run's reward code (the modules its ``scenario.yaml`` imports).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from narla.evaluate import add_replay_arguments, load_policy
from narla.results import output_file
from narla.rollout import collect
from narla.scenario import ScenarioError

LATE = 1 << 30  # an episode count past every reward phase


def record(
    run_dir: str | Path, episodes: int = 1, seed: int | None = None, rewards: bool = True
) -> dict[str, np.ndarray]:
    """Play ``episodes`` episodes of ``run_dir``'s policy; every tick as arrays (see the module docstring).
    ``rewards=False`` pays the task reward alone (no reward code needed; ``reward`` is then the task's)."""
    if episodes < 1:
        raise ScenarioError(f"--episodes: must be >= 1, got {episodes}")
    run = load_policy(run_dir, min(episodes, 16), seed, rewards)
    parts: list[dict[str, torch.Tensor]] = []
    try:
        done = 0
        while done < episodes:
            r = collect(run.engine, run.task, run.scheme, LATE, per_tick_components=True)
            t, b, n = r.actions.shape
            task_action = run.engine.readout(r.actions.reshape(t * b, n).T).reshape(t, b, -1).float()
            batch = {"spikes": r.spikes, "obs": r.obs, "task_reward": r.task_reward, "reward": r.rewards,
                     "task_action": task_action,
                     "valid": r.valid.float(), **{f"reward_{k}": v for k, v in r.components.items()}}
            parts.append({k: v.transpose(0, 1).detach().cpu() for k, v in batch.items()})  # [B, T, ...]
            done += r.num_episodes
    finally:
        run.task.close()
    longest = max(p["spikes"].shape[1] for p in parts)

    def pad(x: torch.Tensor) -> torch.Tensor:
        extra = longest - x.shape[1]
        return torch.cat([x, x.new_zeros(x.shape[0], extra, *x.shape[2:])], 1) if extra else x

    out = {k: torch.cat([pad(p[k]) for p in parts])[:episodes].numpy() for k in parts[0]}
    valid = out.pop("valid")
    out["length"] = valid.sum(1).astype(np.int64)
    wiring = run.wiring
    out["neuron_names"] = np.array([str(n) for n in wiring.neuron_names])
    out["layer"] = wiring.layer.cpu().numpy()
    out["motor"] = wiring.motor.cpu().numpy()
    out["components"] = np.array(run.scheme.names)
    return out


def save(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write ``arrays`` to ``path`` (``.npz``, compressed), whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def main(args: argparse.Namespace) -> int:
    """``narla record``: record episodes of a run's policy to ``.npz``."""
    out = output_file(args.out, "--out") if args.out else Path(args.run_dir) / "record.npz"  # checked first
    arrays = record(args.run_dir, args.episodes, seed=args.seed)
    save(arrays, out)
    e, t, n = arrays["spikes"].shape
    print(f"recorded {e} episode(s) (longest {t} ticks) of {n} neurons, components "
          f"{', '.join(arrays['components'])}: {out}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``narla record``."""
    add_replay_arguments(parser, 1, "episodes to record")
    parser.add_argument("--out", help="the .npz to write (default RUN_DIR/record.npz)")
