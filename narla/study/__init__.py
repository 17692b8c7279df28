"""Instruments for studying how self-interested neurons come to cooperate, as plain functions over a trained run.

Each module is one concept, plain tensors in and plain data out, batched over environment copies (no Python loop
over neurons):

- :mod:`narla.study.activity`: firing rates per neuron and layer, the pairwise spike-correlation matrix;
- :mod:`narla.study.lesions`: silence, clamp on or randomise neurons or groups for whole episodes (one lesion per
  copy of a batch) and measure the change in task return with a confidence interval;
- :mod:`narla.study.influence`: the counterfactual influence matrix ``I[i, j]``: flip neuron i's action at a
  tick in copies that branch from the same state and measure neuron j's reward over the next ticks;
- :mod:`narla.study.alignment`: how each neuron's own return tracks the task return, the share of each reward
  component in it, and free riders;
- :mod:`narla.study.information`: binned mutual information between activity and observation features or the
  task action;
- :mod:`narla.study.analyze`: ``narla analyze RUN_DIR``, all of the above as figures, a report and JSON.

These are the study tools; ``narla.analysis`` holds the paper reproductions (Table 1, the Cooperator, Ant), which
are commands that train, where these only look at what was trained.
"""
