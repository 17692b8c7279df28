"""narla: populations of neurons in which every neuron is a reinforcement-learning agent."""

__version__ = "0.1.0"
