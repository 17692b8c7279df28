"""Replaying a learned policy: ``narla eval DIR --episodes N [--video out.mp4]``.

The run in ``DIR`` is rebuilt from the scenario saved with its parameters (``model.pt``, or ``checkpoint.pt``
when there is no model yet), the parameters and the task's observation statistics are loaded, and the policy
plays ``N`` episodes with the statistics frozen (``task.training = False``). Neurons keep sampling their spikes:
the learned policy *is* stochastic. ES runs are replayed with the mean parameters (no perturbation).

Results: mean and standard deviation of the task return, written to ``DIR/eval.json`` (or ``--json``).
The neurons' rewards are not recomputed unless asked (``--rewards``), so a replay needs none of the run's reward
code. ``--video out.mp4`` renders one episode (cart-pole and swing-up draw themselves, gymnasium tasks such as Ant
through ``rgb_array``) and needs the extra ``narla[video]``; without it, or for a task that cannot render, the
command stops with one message before it writes anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import re
from pathlib import Path

import torch

from narla.results import atomic_write, output_file
from narla.rollout import collect
from narla.scenario import Scenario, ScenarioError, from_dict
from narla.tasks.base import Task


def load_model(run_dir: str | Path) -> dict:
    """The saved model of a results directory: ``model.pt``, else the population part of ``checkpoint.pt``."""
    run_dir = Path(run_dir)
    for name in ("model.pt", "checkpoint.pt"):
        path = run_dir / name
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
    raise ScenarioError(f"{str(run_dir)!r} holds neither model.pt nor checkpoint.pt; is it a narla results directory?")


def save_model(path: str | Path, scenario: Scenario, population: torch.nn.Module, task: Task, **extra) -> None:
    """Write what :func:`load_model` reads, atomically: the population's parameters, the scenario, the task's
    observation statistics when it has them, and any ``extra`` entries (e.g. how the model was trained)."""
    model = {"scenario": scenario.to_dict(), "population": population.state_dict(), **extra}
    normalizer = getattr(task, "normalizer", None)
    if normalizer is not None:
        model["normalizer"] = normalizer.state_dict()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model, tmp)
    os.replace(tmp, path)


def apply_model(saved: dict, population: torch.nn.Module, task: Task) -> None:
    """Load a saved model (:func:`load_model`) into a built run: the population's parameters, and the task's
    observation statistics when both the task and the model have them."""
    population.load_state_dict(saved["population"])
    normalizer = getattr(task, "normalizer", None)
    if normalizer is not None and saved.get("normalizer") is not None:
        normalizer.load_state_dict(saved["normalizer"])


def in_process_options(task_id: str, options: dict) -> dict:
    """A task's options with its copies stepped in this process (no worker processes): replays and tests. They
    score the environment's own reward, so a shaped training reward (Ant's ``progress_bonus``) is dropped."""
    options = dict(options)
    if "asynchronous" in options or task_id == "ant":
        options["asynchronous"] = False
        options.pop("num_workers", None)
    options.pop("progress_bonus", None)
    return options


def eval_scenario(saved: dict, num_envs: int, seed: int | None = None, rewards: bool = False) -> Scenario:
    """The saved scenario set up for replay: ``num_envs`` copies in one process, and the saved seed or ``seed``.

    The run is rebuilt without a learner (:func:`narla.training.build` with ``learner=False``), so ES runs
    replay their mean parameters. Unless ``rewards``, the neurons' rewards are not recomputed (the scheme is the
    task reward alone), so a replay needs none of the run's reward code; its ``imports`` are kept only for a
    network built by a user function.
    """
    scenario = from_dict(saved)
    if not rewards:
        builder = str(scenario.network.get("builder", ""))
        scenario = dataclasses.replace(scenario, rewards=["task"], imports=scenario.imports if ":" in builder else [])
    options = in_process_options(scenario.task.id, scenario.task.options)
    task = dataclasses.replace(scenario.task, num_envs=num_envs, options=options)
    return dataclasses.replace(
        scenario, task=task, seed=scenario.seed if seed is None else seed, device="cpu"
    )


def load_policy(run_dir: str | Path, num_envs: int, seed: int | None = None, rewards: bool = False):
    """The run of ``run_dir`` rebuilt for replay (:func:`eval_scenario`) with its learned parameters and frozen
    observation statistics: a :class:`narla.training.Run` without a learner. Close its task when done."""
    from narla.training import build

    saved = load_model(run_dir)
    run = build(eval_scenario(saved["scenario"], num_envs, seed, rewards), learner=False)
    try:
        apply_model(saved, run.engine.population, run.task)
    except BaseException:
        run.task.close()
        raise
    run.task.training = False
    return run


def evaluate(
    run_dir: str | Path,
    episodes: int = 10,
    seed: int | None = None,
    num_envs: int | None = None,
    shuffle: bool = False,
    noise_features: int = 0,
    overrides: list[str] | None = None,
    rewards: bool = False,
    distance: bool = False,
) -> dict:
    """Play ``episodes`` episodes with the learned policy of ``run_dir``; returns the statistics.

    ``shuffle`` draws a new feature order for each episode and ``noise_features`` adds that many inputs of pure
    noise (:class:`narla.tasks.robustness.ShuffledTask`); with extra inputs the network is rebuilt with one more
    sensory neuron per input, which only a network whose parameters do not depend on the number of inputs allows.
    ``overrides`` (``KEY=VALUE``) change the replayed scenario, e.g. ``task.options.start=harder``. ``rewards``
    recomputes the neurons' rewards with the run's own scheme (its reward code must be importable). ``distance``
    (PyBullet walkers such as Ant) also follows the torso: how far it travels along x in each episode
    (:class:`narla.tasks.travel.TravelTask`), since a walker can score well by standing still.

    Returns:
        ``{"episodes", "mean_return", "std_return", "returns", "lengths", "seed", "shuffle", "noise_features"}``
        (population standard deviation), and with ``rewards`` ``"reward_components"``: each term's return per
        episode, averaged over the neurons (the last phase's terms), and with ``distance`` ``"distances"`` (m per
        episode) and ``"mean_distance"``.
    """
    from narla.scenario import apply_overrides
    from narla.training import build

    if noise_features < 0:
        raise ScenarioError(f"--noise-features: must be >= 0, got {noise_features}")
    saved = load_model(run_dir)
    scenario = eval_scenario(apply_overrides(saved["scenario"], overrides or []), num_envs or min(episodes, 10), seed,
                             rewards)
    run = build(scenario, learner=False)
    try:
        if noise_features:
            _widen(run, run.task.obs_dim + noise_features)
        try:
            apply_model(saved, run.engine.population, run.task)
        except RuntimeError as err:
            shaped = ", ".join(re.findall(r"size mismatch for ([\w.]+)", str(err))) or str(err).splitlines()[0]
            raise ScenarioError(
                f"--noise-features: this network's parameters depend on its number of inputs ({shaped}); only "
                "networks without per-input parameters (e.g. network.context_map: shared) take extra inputs"
            ) from None
        run.task.training = False
        task = travel = None
        if distance:
            from narla.tasks.travel import TravelTask

            try:
                task = travel = TravelTask(run.task)
            except ValueError as err:
                raise ScenarioError(f"--{err}") from None
        if shuffle or noise_features:
            from narla.tasks.robustness import ShuffledTask

            task = ShuffledTask(task or run.task, shuffle, noise_features, seed=scenario.seed + 7)
        components: dict[str, list[float]] | None = {} if rewards else None
        returns, lengths = _play(run, episodes, task, components)
    finally:
        run.task.close()
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    extra = {}
    if components:
        extra["reward_components"] = {k: sum(v[:episodes]) / episodes for k, v in components.items()}
    if travel is not None:
        extra["distances"] = distances = travel.distances()[:episodes]
        extra["mean_distance"] = sum(distances) / len(distances)
    return {
        "episodes": episodes,
        "mean_return": mean,
        "std_return": std,
        "returns": returns,
        "lengths": lengths,
        "seed": scenario.seed,
        "shuffle": shuffle,
        "noise_features": noise_features,
        **extra,
    }


def _widen(run, n_obs: int) -> None:
    """Rebuild ``run``'s graph, wiring, population and engine for ``n_obs`` inputs (same hyper-parameters)."""
    from narla.context import action_dim
    from narla.cooperator import is_attention_network, population_from_graph
    from narla.engine import Engine
    from narla.training import build_graph
    from narla.wiring import compile_graph

    if not is_attention_network(run.graph):
        raise ScenarioError("--noise-features: only attention_neuron / cooperator networks take extra inputs")
    graph = build_graph(run.scenario.network, n_obs, run.engine.readout.motor_groups())
    run.graph, run.wiring = graph, compile_graph(graph, run.device)
    population = population_from_graph(graph, action_dim(run.task.action_space)).to(run.device)
    run.engine = Engine(run.wiring, population, run.engine.readout, run.scenario.propagation, run.engine.generator)


def _play(
    run, episodes: int, task: Task | None = None, components: dict[str, list[float]] | None = None
) -> tuple[list[float], list[int]]:
    """Batches of ``B`` episodes until ``episodes`` are done; returns their returns and lengths. ``components``
    (optional) receives each reward term's per-episode return, averaged over the neurons."""
    task = task or run.task
    late = 1 << 30  # past every reward phase: the scheme of a fully trained network
    returns: list[float] = []
    lengths: list[int] = []
    while len(returns) < episodes:
        rollout = collect(run.engine, task, run.scheme, late)
        returns += rollout.task_reward.sum(0).tolist()
        if components is not None:
            for label, value in rollout.component_sums.items():
                components.setdefault(label, []).extend(value.mean(1).tolist())
        lengths += [int(n) for n in rollout.valid.sum(0).tolist()]
    return returns[:episodes], lengths[:episodes]


class PolicyTest:
    """Fresh test episodes of a training run's current policy (``training.test_every``), on a task of its own.

    ``episodes`` copies of the run's task play one episode each, always from the same start states (the task is
    reseeded with ``seed`` before each test), so successive scores differ only by the policy. The policy acts
    with the population's own parameters: an evolution strategy's mean, without perturbations. Observation
    statistics are copied from the training task and frozen. Deterministic for rate neurons under ES; spiking
    neurons keep sampling, as in ``narla eval``.
    """

    def __init__(self, run, episodes: int, seed: int) -> None:
        from narla.engine import Engine
        from narla.learning.es import PerturbedPopulation
        from narla.tasks.registry import make_task

        scenario = run.scenario
        options = in_process_options(scenario.task.id, scenario.task.options)
        if scenario.task.max_episode_steps is not None:
            options["max_episode_steps"] = scenario.task.max_episode_steps
        self.task = make_task(scenario.task.id, episodes, device=run.device, **options)
        self.task.training = False
        population = run.engine.population
        if isinstance(population, PerturbedPopulation):
            population = population.population
        generator = torch.Generator(device=run.device)
        self.engine = Engine(run.wiring, population, run.engine.readout, scenario.propagation, generator)
        self.engine.explore = run.engine.explore
        self.run, self.seed = run, seed

    def __call__(self) -> tuple[float, float]:
        """Mean and (population) sd of the test returns."""
        source = getattr(self.run.task, "normalizer", None)
        if source is not None and getattr(self.task, "normalizer", None) is not None:
            self.task.normalizer.load_state_dict(source.state_dict())
        self.engine.generator.manual_seed(self.seed + 1)
        self.task.reset(seed=self.seed)
        rollout = collect(self.engine, self.task, self.run.scheme, 1 << 30)
        returns = rollout.task_reward.sum(0)
        return float(returns.mean()), float(returns.std(unbiased=False))

    def close(self) -> None:
        self.task.close()


class _Recording(Task):
    """A one-copy task that keeps a frame of copy 0 after every reset and step (``task.render()``)."""

    def __init__(self, task: Task) -> None:
        self.inner = task
        self.num_envs, self.obs_dim, self.action_space = task.num_envs, task.obs_dim, task.action_space
        self.device, self.max_episode_steps, self.solve = task.device, task.max_episode_steps, task.solve
        self.frames: list = []

    def reset(self, seed: int | None = None) -> torch.Tensor:
        obs = self.inner.reset(seed)
        self.frames.append(self.inner.render())
        return obs

    def step(self, action: torch.Tensor):
        out = self.inner.step(action)
        self.frames.append(self.inner.render())
        return out


RENDERED = ("cartpole", "swingup", "ant")


def check_video(scenario: Scenario, out: str | Path) -> None:
    """Raise :class:`ScenarioError` when a video of this scenario cannot be written to ``out`` here."""
    if Path(out).suffix.lower() not in (".mp4", ".gif", ".webm", ".mkv"):
        raise ScenarioError(f"--video {str(out)!r}: give a .mp4 (or .gif, .webm, .mkv) file name")
    task = scenario.task.id
    if task not in RENDERED and not task.startswith("gym:"):
        raise ScenarioError(f"--video: task {task!r} cannot render; tasks that can: {', '.join(RENDERED)}, gym:ID")
    if importlib.util.find_spec("imageio") is None or (
        Path(out).suffix.lower() != ".gif" and importlib.util.find_spec("imageio_ffmpeg") is None
    ):
        raise ScenarioError("--video: writing a video needs imageio and its ffmpeg plugin; install the extra "
                            "with pip install 'narla[video]' (imageio, imageio-ffmpeg)")


def record_video(run_dir: str | Path, out: str | Path, seed: int | None = None) -> int:
    """Render one episode of the learned policy of ``run_dir`` to ``out`` (written whole or not at all); returns
    the number of frames: the start and one per step of the episode.

    Raises:
        ScenarioError: the task cannot render here, or a codec is missing (:func:`check_video`).
    """
    from narla.training import build

    saved = load_model(run_dir)
    scenario = eval_scenario(saved["scenario"], 1, seed)
    check_video(scenario, out)
    import imageio

    run = build(scenario, learner=False)
    source = run.task
    if scenario.task.id == "ant" or scenario.task.id.startswith("gym:"):
        from narla.tasks.ant import ANT_ENV_ID
        from narla.tasks.gym_vector import GymVectorTask

        env_id = ANT_ENV_ID if scenario.task.id == "ant" else scenario.task.id.split(":", 1)[1]
        normalize = getattr(run.task, "normalizer", None) is not None
        source = GymVectorTask(env_id, 1, normalize_obs=normalize, env_kwargs={"render_mode": "rgb_array"})
        source.render_fps = source.env.metadata.get("render_fps") or 30
    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    try:
        apply_model(saved, run.engine.population, source)
        source.training = False
        recording = _Recording(source)
        _, lengths = _play(run, 1, recording)
        frames = recording.frames[: lengths[0] + 1]  # collection plays a few ticks past the end; drop them
        imageio.mimsave(tmp, frames, fps=source.render_fps or 30)
        tmp.replace(out)
    except ScenarioError:
        raise
    except Exception as err:  # a renderer or codec failing shows up only when used
        raise ScenarioError(f"--video: rendering failed ({type(err).__name__}: {err})") from err
    finally:
        tmp.unlink(missing_ok=True)
        if source is not run.task:
            source.close()
        run.task.close()
    return len(frames)


def main(args: argparse.Namespace) -> int:
    """``narla eval``: print and write the evaluation; optionally a video (checked before anything is written)."""
    if args.episodes < 1:
        raise ScenarioError(f"--episodes: must be >= 1, got {args.episodes}")
    out = output_file(args.json, "--json") if args.json else Path(args.run_dir) / "eval.json"
    if args.video:
        check_video(eval_scenario(load_model(args.run_dir)["scenario"], 1), args.video)
    stats = evaluate(
        args.run_dir, args.episodes, seed=args.seed, shuffle=args.shuffle, noise_features=args.noise_features,
        overrides=args.set, rewards=args.rewards, distance=args.distance,
    )
    atomic_write(out, json.dumps(stats, indent=2) + "\n")
    kind = " (shuffled)" if args.shuffle else ""
    kind += f" (+{args.noise_features} noise inputs)" if args.noise_features else ""
    print(
        f"{args.episodes} episodes{kind}: mean return {stats['mean_return']:.2f} ± {stats['std_return']:.2f} (sd); "
        + (f"mean torso travel along x {stats['mean_distance']:.2f} m; " if args.distance else "")
        + f"written to {out}"
    )
    if args.video:
        frames = record_video(args.run_dir, args.video, seed=args.seed)
        print(f"video: {args.video} ({frames} frames)")
    return 0


def add_replay_arguments(parser: argparse.ArgumentParser, episodes: int, what: str = "episodes to play") -> None:
    """``RUN_DIR``, ``--episodes`` and ``--seed``: the options of every command that replays a run's policy."""
    parser.add_argument("run_dir", help="a results directory written by narla run")
    parser.add_argument("--episodes", type=int, default=episodes, help=f"{what} (default {episodes})")
    parser.add_argument("--seed", type=int, help="seed of the replay (default: the run's seed)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``narla eval``."""
    add_replay_arguments(parser, 10)
    parser.add_argument("--json", help="where to write the statistics (default RUN_DIR/eval.json)")
    parser.add_argument("--shuffle", action="store_true", help="a new order of the observation features each episode")
    parser.add_argument("--noise-features", type=int, default=0, metavar="K", help="add K inputs of pure noise")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="change the replayed scenario, e.g. --set task.options.start=harder",
    )
    parser.add_argument("--video", help="also render one episode to this .mp4 (needs the extra narla[video])")
    parser.add_argument("--distance", action="store_true",
                        help="also report how far the torso travels along x per episode (PyBullet walkers: ant)")
    parser.add_argument("--rewards", action="store_true",
                        help="also recompute the neurons' rewards (needs the run's reward code; default: task only)")
