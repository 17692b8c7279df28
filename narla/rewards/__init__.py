"""Neuron rewards: built-in rewards, the reward registry and reward schemes (see ``scheme.py`` for the YAML)."""

from narla.rewards.builtin import Relay, Sparsity, Trace, activity, prediction, task
from narla.rewards.dilemma import Dilemma
from narla.rewards.paper import PaperSparsity, PaperTrace, paper_firing, paper_prediction
from narla.rewards.registry import RewardError, register_reward, registered_rewards, resolve_reward
from narla.rewards.scheme import RewardScheme
from narla.rewards.state import NetworkState

__all__ = [
    "Dilemma",
    "NetworkState",
    "RewardError",
    "RewardScheme",
    "PaperSparsity",
    "PaperTrace",
    "Relay",
    "Sparsity",
    "Trace",
    "activity",
    "paper_firing",
    "paper_prediction",
    "prediction",
    "register_reward",
    "registered_rewards",
    "resolve_reward",
    "task",
]
