"""Learning rules: every neuron maximizes its own discounted reward."""

from narla.learning.actor_critic import ActorCritic
from narla.learning.es import PerNeuronES
from narla.learning.reinforce import Reinforce

__all__ = ["ActorCritic", "PerNeuronES", "Reinforce"]
