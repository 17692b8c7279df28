"""What a results directory holds: the ``README.md`` narla writes into each one, so the folder explains itself."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

FILES: dict[str, str] = {
    "scenario.yaml": "the resolved scenario (seed, device and the user modules it imports included): "
                     "`narla run scenario.yaml` reproduces the run",
    "episodes.csv": "one row per episode of one environment copy: return, length, wall clock (s), loss, firing rate "
                    "per layer (`firing_L1`, ...), each reward component per layer (`reward_<term>_L1`, ...)",
    "summary.json": "how the run ended (`status`: solved, max_episodes, max_env_steps, time_cap, paused or "
                    "failed: ...), the episode it was solved at, environment steps, wall time, neuron-steps/s, "
                    "and the `machine` its last call ran on (a run repeats bit for bit only on the same kind)",
    "model.pt": "every neuron's parameters and the scenario (`narla eval`, `narla plot`, `narla record` read it)",
    "checkpoint.pt": "with `training.checkpoint_every`: the whole training state; `narla run --resume DIR`",
    "tests.csv": "with `training.test_every`: test scores of the current policy on fresh episodes",
    "neurons.csv": "with `training.log_neurons`: each neuron's firing rate and return per episode",
    "emergence.csv": "with `training.analyze_every`: study metrics over training (firing, alignment, correlation, "
                     "lesion effects of a sample of neurons); `narla analyze` plots them",
    "eval.json": "written by `narla eval`: returns of the replayed policy",
    "record.npz": "written by `narla record`: spikes, observations and rewards of replayed episodes",
    "tensorboard/": "with `training.log: [csv, tensorboard]`: the episode statistics as TensorBoard events",
    "plots/": "written by `narla plot`: learning curve and spike raster",
}


class OutputError(ValueError):
    """An output path narla cannot write: a folder where a file goes, or a file where a folder goes."""


def output_file(path: str | Path, option: str) -> Path:
    """``path`` checked as a file a command may write (``option`` names it in the message): not an existing folder,
    and no part of its folder an existing file. Nothing is made here: the writer makes the missing folders."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {str(path)!r}: is a folder; give a file name")
    _check_folders(path, option)
    return path


def output_dir(path: str | Path, option: str) -> Path:
    """``path`` checked as a folder a command may write into (``option`` names it in the message): not an existing
    file, and no part of it an existing file. Nothing is made here."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {str(path)!r}: is a file; give a folder")
    _check_folders(path, option)
    return path


def _check_folders(path: Path, option: str) -> None:
    """Refuse ``path`` when a folder above it is an existing file."""
    if any(folder.exists() and not folder.is_dir() for folder in path.parents):
        raise OutputError(f"{option} {str(path)!r}: a part of its folder is a file")


def atomic_write(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a ``.tmp`` beside it, then a rename), its missing folders
    made first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def index_text(name: str) -> str:
    """The ``README.md`` of the results directory of run ``name``."""
    rows = "\n".join(f"| `{f}` | {what} |" for f, what in FILES.items())
    return (f"# narla results: {name}\n\nFiles narla writes here (some only when the setting named is on, or when "
            f"the command named has run):\n\n| file | contents |\n|---|---|\n{rows}\n")


def write_index(out_dir: str | Path, name: str) -> Path:
    """Write ``out_dir/README.md`` (write-then-rename)."""
    return atomic_write(Path(out_dir) / "README.md", index_text(name))


def machine(device: torch.device | str = "cpu") -> dict[str, object]:
    """What a run's numbers depend on beyond its scenario: the processor, the instruction set torch's kernels use,
    the torch build and thread count, and the GPU when ``device`` is one. A run repeats bit for bit on the same
    kind of machine; another processor's kernels round differently, so its training takes another path (see the
    README's *Reproducibility*)."""
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:  # Linux names the model; elsewhere the fallback
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    info: dict[str, object] = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
