"""``narla analyze RUN_DIR [--episodes N] [--out DIR]``: every study instrument on one trained run.

Plays ``N`` recorded episodes of the learned policy and measures, over them, firing and spike correlations
(:mod:`~narla.study.activity`), lesions of single neurons and of whole layers (:mod:`~narla.study.lesions`), the
counterfactual influence matrix (:mod:`~narla.study.influence`, torch-native tasks), incentive alignment
(:mod:`~narla.study.alignment`) and mutual information with the observation and the task action
(:mod:`~narla.study.information`). Writes ``analysis.json`` (every number), ``analysis.md`` (a short report: the
neurons that carry the task, the most cooperative and most competitive pairs, free riders) and PNG figures to
``DIR`` (default ``RUN_DIR/analysis``).

Large networks are sampled: at most ``--lesion-neurons`` neurons are lesioned one by one and at most
``--influence-sources`` neurons are flipped (evenly spread over the network, every layer lesioned whole).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from narla.evaluate import add_replay_arguments, load_policy
from narla.plot import read_csv
from narla.record import record
from narla.results import atomic_write, output_dir
from narla.rewards import RewardError
from narla.scenario import ScenarioError
from narla.study.activity import firing_rates, layer_rates, spike_correlation
from narla.study.alignment import alignment, component_shares, free_riders
from narla.study.influence import influence_matrix
from narla.study.information import mutual_information
from narla.study.lesions import lesion_effects

TORCH_TASKS = ("cartpole", "swingup")


def spread(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(count)``, evenly spread (all of them when ``count <= limit``)."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def analyze_run(run_dir: str | Path, episodes: int = 16, lesion_neurons: int = 48, influence_sources: int = 32,
                horizon: int = 10, bins: int = 8, seed: int | None = None, max_copies: int = 256) -> dict:
    """Every measurement of :mod:`narla.study` on the policy of ``run_dir``; plain data (lists and numbers).
    Lesions play in batches of at most ``max_copies`` environment copies."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    notes: list[str] = []
    rewards = True
    try:
        rec = record(run_dir, episodes, seed=seed, rewards=True)
    except (ScenarioError, RewardError) as err:  # the reward code is not importable here: task reward only
        notes.append(f"rewards not recomputed ({err}); alignment and influence use the task reward only")
        rewards = False
        rec = record(run_dir, episodes, seed=seed, rewards=False)
    timings["record_s"] = time.perf_counter() - clock
    names = [str(n) for n in rec["neuron_names"]]
    layer = torch.as_tensor(rec["layer"])
    n, e = len(names), rec["spikes"].shape[0]
    spikes = torch.as_tensor(rec["spikes"])
    length = torch.as_tensor(rec["length"])
    valid = (torch.arange(spikes.shape[1]).unsqueeze(0) < length.unsqueeze(1)).float()

    clock = time.perf_counter()
    rates = firing_rates(spikes, valid)
    corr = spike_correlation(spikes, valid)
    timings["activity_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    chosen = spread(n, lesion_neurons)
    targets = {names[i]: [i] for i in chosen}
    layers = sorted(set(layer.tolist()))
    layer_targets = {f"layer {k}": torch.nonzero(layer == k).flatten().tolist() for k in layers}
    per = min(episodes, 8)
    # Batches of at most max_copies copies (each with its own control): big networks gather [n, F, B] inputs.
    chunk = max(1, (max_copies // per - 1) // 2)
    names_list = list(targets)
    single, whole = [], []
    for first in range(0, len(names_list) + 1, chunk):
        part = {k: targets[k] for k in names_list[first : first + chunk]}
        layers_part = layer_targets if first == 0 else {}
        if not part and not layers_part:
            break
        run = load_policy(run_dir, (1 + 2 * len(part) + len(layers_part)) * per, seed)
        run.engine.trim_padding()
        try:
            if run.engine.whole_network:
                raise ScenarioError("narla analyze: lesions and influence need a stage-wise network, not "
                                    "network.builder attention_neuron / cooperator")
            if part:
                single += lesion_effects(run, part, modes=("silence", "fire"), episodes=episodes)
            if layers_part:
                whole += lesion_effects(run, layers_part, modes=("silence",), episodes=episodes)
        finally:
            run.task.close()
    timings["lesions_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    influence = None
    sources = spread(n, influence_sources)
    run = load_policy(run_dir, len(sources) + 1, seed, rewards)
    run.engine.trim_padding()
    try:
        if run.scenario.task.id in TORCH_TASKS:
            influence = influence_matrix(run, sources, horizon=horizon)
        else:
            notes.append(f"no influence matrix: task {run.scenario.task.id!r} cannot branch copies from one state")
        task_id = run.scenario.task.id
    finally:
        run.task.close()
    timings["influence_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    neuron_returns = torch.as_tensor(rec["reward"]).sum(1)  # [E, N]
    task_returns = torch.as_tensor(rec["task_reward"]).sum(1)  # [E]
    components = {str(k): torch.as_tensor(rec[f"reward_{k}"]).sum(1) for k in rec["components"]}
    aligned = alignment(neuron_returns, task_returns)
    shares = component_shares(components)
    silence = {r["target"]: r for r in single if r["mode"] == "silence"}
    ci_high = torch.tensor([silence[names[i]]["ci"][1] for i in chosen])  # silencing each lesioned neuron
    mean_return = neuron_returns.mean(0)
    riders = free_riders(mean_return[chosen], ci_high, [names[i] for i in chosen])
    timings["alignment_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    mask = valid.bool()
    x = spikes[mask]  # [S, N]
    obs = torch.as_tensor(rec["obs"])[mask]
    action = torch.as_tensor(rec["task_action"])[mask]
    mi_obs = mutual_information(x, obs, bins)
    mi_action = mutual_information(x, action, bins)
    timings["information_s"] = time.perf_counter() - clock

    carriers = sorted((r for r in single + whole if r["ci"][1] < 0), key=lambda r: r["effect"])
    pairs: dict[str, list] = {"cooperative": [], "competitive": []}
    if influence is not None:
        matrix = influence["influence"].clone()
        for row, i in enumerate(sources):
            matrix[row, i] = float("nan")  # a neuron's effect on itself is not a pair
        flat = [(float(matrix[r, j]), names[sources[r]], names[j]) for r in range(len(sources)) for j in range(n)
                if not math.isnan(float(matrix[r, j]))]
        flat.sort()
        pairs["cooperative"] = [{"from": a, "to": b, "influence": v} for v, a, b in reversed(flat[-5:]) if v > 0]
        pairs["competitive"] = [{"from": a, "to": b, "influence": v} for v, a, b in flat[:5] if v < 0]
    by_layer = {int(k): torch.nonzero(layer == k).flatten() for k in layers}
    return {
        "run_dir": str(run_dir), "task": task_id, "episodes": e, "neurons": names, "layer": layer.tolist(),
        "mean_return": float(task_returns.mean()),
        "activity": {"firing": rates.tolist(), "firing_per_layer": layer_rates(rates, layer),
                     "correlation": corr.tolist()},
        "lesions": {"neurons": single, "layers": whole, "lesioned": [names[i] for i in chosen]},
        "influence": None if influence is None else {
            "sources": [names[i] for i in sources], "matrix": influence["influence"].tolist(),
            "task": influence["task"].tolist(), "branches": influence["branches"], "horizon": horizon},
        "alignment": {"correlation": aligned.tolist(), "mean_return": mean_return.tolist(),
                      "shares": {k: v.tolist() for k, v in shares.items()}, "free_riders": riders,
                      "per_layer": {k: float(aligned[idx].mean()) for k, idx in by_layer.items()}},
        "information": {
            "features": obs.shape[1], "bins": bins, "obs": mi_obs.tolist(), "action": mi_action.tolist(),
            "obs_max_per_layer": {k: float(mi_obs[idx].max(1).values.mean()) for k, idx in by_layer.items()},
            "action_per_layer": {k: float(mi_action[idx].mean()) for k, idx in by_layer.items()}},
        "carriers": [{"target": r["target"], "mode": r["mode"], "effect": r["effect"], "ci": r["ci"]}
                     for r in carriers[:10]],
        "pairs": pairs, "notes": notes, "timings_s": timings,
        "over_training": {k: v.tolist() for k, v in read_csv(Path(run_dir) / "emergence.csv").items()} or None,
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path.name


def figures(result: dict, out: Path) -> list[str]:
    """The PNGs of :func:`analyze_run`'s result; returns their file names."""
    plt = _pyplot()
    names, written = result["neurons"], []
    n = len(names)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(range(n), result["activity"]["firing"], color=[f"C{k % 10}" for k in result["layer"]])
    a.set(title="firing rate per neuron (colour: layer)", xlabel="neuron", ylabel="rate", ylim=(0, 1))
    im = b.imshow(np.array(result["activity"]["correlation"]), cmap="RdBu_r", vmin=-1, vmax=1)
    b.set(title="spike correlation", xlabel="neuron", ylabel="neuron")
    fig.colorbar(im, ax=b)
    fig.tight_layout()
    written.append(_save(fig, out / "activity.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(result["lesions"]["neurons"]) + 3), 4))
    rows = result["lesions"]["neurons"] + result["lesions"]["layers"]
    labels = [f"{r['target']} {r['mode']}" for r in rows]
    effects = [r["effect"] for r in rows]
    errors = [[r["effect"] - r["ci"][0] for r in rows], [r["ci"][1] - r["effect"] for r in rows]]
    ax.bar(range(len(rows)), effects, yerr=errors, color=["tab:red" if r["ci"][1] < 0 else "0.6" for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=5)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title="lesion effect on the task return (95 % CI; red: the task needs it)", ylabel="Δ return")
    fig.tight_layout()
    written.append(_save(fig, out / "lesions.png"))
    plt.close(fig)

    if result["influence"] is not None:
        matrix = np.array(result["influence"]["matrix"])
        bound = max(float(np.abs(matrix).max()), 1e-9)
        fig, ax = plt.subplots(figsize=(7, 5))
        im = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
        ax.set(title=f"influence I[i, j] over {result['influence']['horizon']} ticks (red: i helps j)",
               xlabel="j (paid neuron)", ylabel="i (source neuron, flipped)")
        ax.set_yticks(range(len(result["influence"]["sources"])), result["influence"]["sources"], fontsize=5)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        written.append(_save(fig, out / "influence.png"))
        plt.close(fig)
    if result.get("over_training"):
        columns = {k: np.asarray(v) for k, v in result["over_training"].items()}
        written.append(plot_over_training(columns, out / "emergence_over_training.png"))

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[2, 1])
    info = np.array(result["information"]["obs"]).T  # [features, neurons]
    im = a.imshow(info, aspect="auto", cmap="viridis", interpolation="nearest")
    a.set_yticks(range(info.shape[0]))
    a.set(title="mutual information with each observation feature (bits)", xlabel="neuron", ylabel="feature index")
    fig.colorbar(im, ax=a)
    aligned = result["alignment"]["correlation"]
    b.bar(range(n), aligned, color=[f"C{k % 10}" for k in result["layer"]])
    flat = " (all 0: the task return did not vary)" if not any(aligned) else ""
    b.set(title=f"alignment: corr(own return, task return){flat}", xlabel="neuron", ylim=(-1, 1))
    fig.tight_layout()
    written.append(_save(fig, out / "information_alignment.png"))
    plt.close(fig)
    return written


def plot_over_training(columns: dict[str, np.ndarray], path: Path) -> str:
    """``emergence_over_training.png``: the rows of ``emergence.csv`` against episodes."""
    plt = _pyplot()
    x = columns["episode"]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    groups = [("firing_L", "firing rate"), ("alignment_L", "alignment"), ("abs_corr", "mean |spike correlation|"),
              ("lesion_", "Δ return when silenced")]
    for ax, (prefix, title) in zip(axes, groups, strict=True):
        for key in sorted(k for k in columns if k.startswith(prefix)):
            ax.plot(x, columns[key], marker=".", lw=1, label=key.replace(prefix, "") or key)
        ax.set(title=title, xlabel="episode")
        ax.legend(fontsize=6)
    fig.tight_layout()
    name = _save(fig, path)
    plt.close(fig)
    return name


def report(result: dict, pngs: list[str]) -> str:
    """``analysis.md``: the headline findings of :func:`analyze_run`'s result."""
    def f(v: float) -> str:
        return f"{v:+.2f}" if abs(v) < 100 else f"{v:+,.0f}"

    lines = [f"# Analysis of `{result['run_dir']}`", "",
             f"{result['episodes']} recorded episodes of {len(result['neurons'])} neurons on `{result['task']}`, "
             f"mean task return {result['mean_return']:.1f}.", ""]
    lines += ["| layer | firing rate | alignment (mean corr) | max MI with a feature (bits, mean) | "
              "MI with the action |", "|--:|--:|--:|--:|--:|"]
    info, align = result["information"], result["alignment"]
    for k, rate in result["activity"]["firing_per_layer"].items():
        lines.append(f"| {k} | {rate:.2f} | {align['per_layer'][k]:+.2f} | {info['obs_max_per_layer'][k]:.3f} | "
                     f"{info['action_per_layer'][k]:.3f} |")
    lines += ["", "**Neurons that carry the task** (lesions whose 95 % interval is below 0):", ""]
    lines += [f"- {c['target']} ({c['mode']}): {f(c['effect'])} [{f(c['ci'][0])}, {f(c['ci'][1])}]"
              for c in result["carriers"]] or ["- none: no single lesion measurably hurt the task"]
    for kind in ("cooperative", "competitive"):
        lines += ["", f"**Most {kind} pairs** (influence on the paid neuron's reward):", ""]
        lines += [f"- {p['from']} → {p['to']}: {p['influence']:+.3f}" for p in result["pairs"][kind]] or ["- none"]
    riders = ", ".join(align["free_riders"]) or "none"
    lines += ["", f"**Free riders** (rewarded, but silencing them does not hurt the task): {riders}", ""]
    lines += [f"Note: {n}" for n in result["notes"]]
    timing = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in result["timings_s"].items())
    lines += ["", f"Time: {timing}.", "", *[f"![{p}]({p})" for p in pngs], ""]
    return "\n".join(lines)


def write(result: dict, out: Path) -> list[Path]:
    """``analysis.json``, ``analysis.md`` and the PNGs in ``out`` (each written whole)."""
    out.mkdir(parents=True, exist_ok=True)
    pngs = figures(result, out)
    paths = [atomic_write(out / "analysis.json", json.dumps(result, indent=1) + "\n"),
             atomic_write(out / "analysis.md", report(result, pngs))]
    return paths + [out / p for p in pngs]


def main(args: argparse.Namespace) -> int:
    """``narla analyze``."""
    if args.episodes < 2:
        raise ScenarioError(f"--episodes: must be >= 2 (lesion intervals need a spread), got {args.episodes}")
    out = output_dir(args.out, "--out") if args.out else Path(args.run_dir) / "analysis"  # checked first
    start = time.perf_counter()
    result = analyze_run(args.run_dir, args.episodes, args.lesion_neurons, args.influence_sources, args.horizon,
                         args.bins, args.seed)
    for path in write(result, out):
        print(path)
    print(f"analyzed in {time.perf_counter() - start:.1f} s")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``narla analyze``."""
    add_replay_arguments(parser, 16, "episodes per measurement")
    parser.add_argument("--out", help="where the report goes (default RUN_DIR/analysis)")
    parser.add_argument("--lesion-neurons", type=int, default=48, help="neurons lesioned one by one (default 48)")
    parser.add_argument("--influence-sources", type=int, default=32, help="neurons flipped for influence (default 32)")
    parser.add_argument("--horizon", type=int, default=10, help="ticks over which influence is summed (default 10)")
    parser.add_argument("--bins", type=int, default=8, help="bins of continuous variables for information")
