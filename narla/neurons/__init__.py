"""Per-neuron parameters stacked into batched tensors."""

from narla.neurons.population import Population, StackedMLP

__all__ = ["Population", "StackedMLP"]
