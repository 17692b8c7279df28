"""Discounted returns and GAE as tensor operations, against the tick-by-tick recurrences they replace."""

import pytest
import torch

from narla.learning.returns import (
    EpisodeTally,
    discounted_returns,
    gae,
    normalize_per_neuron,
    reverse_discounted_sum,
)


def recurrence(x, done, factor):
    """``y_t = x_t + factor (1 − done_t) y_{t+1}``, one tick at a time (the oracle)."""
    y, running = torch.zeros_like(x), torch.zeros_like(x[0])
    keep = (~done).to(x.dtype).unsqueeze(-1)
    for t in range(x.shape[0] - 1, -1, -1):
        running = x[t] + factor * keep[t] * running
        y[t] = running
    return y


def episodes(steps, batch=6, neurons=3, p_done=0.04, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, batch, neurons, generator=g)
    values = torch.randn(steps, batch, neurons, generator=g)
    done = torch.rand(steps, batch, generator=g) < p_done
    done[:, 0] = False  # a column that never ends inside the batch
    if steps > 3:
        done[2, 1] = done[3, 1] = True  # back-to-back boundaries, a one-tick episode between them
    return rewards, values, done


@pytest.mark.parametrize("steps", [1, 2, 7, 300, 2500])
def test_vectorised_returns_equal_the_recurrence_on_episodes_with_boundaries(steps):
    rewards, _, done = episodes(steps, seed=steps)
    expected = recurrence(rewards.double(), done, 0.99)
    assert torch.allclose(discounted_returns(rewards, done, 0.99).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor", [0.0, 0.3, 0.9405, 1.0])
def test_the_scan_is_exact_for_any_factor_even_where_blocks_are_short(factor):
    x, _, done = episodes(400, seed=1)
    expected = recurrence(x.double(), done, factor)
    assert torch.allclose(reverse_discounted_sum(x, done, factor).double(), expected, rtol=1e-5, atol=1e-4)


def test_vectorised_gae_equals_the_recurrence_and_its_targets_are_advantages_plus_values():
    rewards, values, done = episodes(350, seed=3)
    gamma, lam = 0.99, 0.95
    keep = (~done).float().unsqueeze(-1)
    next_value = torch.cat([values[1:], torch.zeros_like(values[:1])])
    delta = rewards + gamma * next_value * keep - values
    expected = recurrence(delta.double(), done, gamma * lam)
    adv, targets = gae(rewards, values, done, gamma, lam)
    assert torch.allclose(adv.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(targets, adv + values)


def test_a_done_cuts_the_return_so_the_next_episode_never_leaks_back():
    rewards = torch.tensor([1.0, 1.0, 100.0, 100.0]).view(4, 1, 1)
    done = torch.tensor([False, True, False, True]).view(4, 1)
    returns = discounted_returns(rewards, done, 0.5).flatten().tolist()
    assert returns == pytest.approx([1.5, 1.0, 150.0, 100.0])


def test_a_wide_population_is_scanned_a_slice_of_neurons_at_a_time_with_the_same_result(monkeypatch):
    import narla.learning.returns as returns

    x, _, done = episodes(120, neurons=7, seed=5)
    whole = reverse_discounted_sum(x, done, 0.97)
    monkeypatch.setattr(returns, "MIN_SLICE", 1)
    monkeypatch.setattr(returns, "COLUMN_BUDGET", 120 * 6 * 2)  # two neurons per slice
    assert torch.equal(reverse_discounted_sum(x, done, 0.97), whole)


def test_the_scan_written_over_its_own_input_equals_the_scan_into_a_new_tensor(monkeypatch):
    import narla.learning.returns as returns

    x, _, done = episodes(3000, neurons=5, seed=6)  # blocks of about 1,400 ticks: a carry between blocks
    monkeypatch.setattr(returns, "MIN_SLICE", 1)
    monkeypatch.setattr(returns, "COLUMN_BUDGET", 3000 * 6 * 2)  # and slices of two neurons
    expected = reverse_discounted_sum(x, done, 0.99)
    assert reverse_discounted_sum(x, done, 0.99, out=x) is x
    assert torch.equal(x, expected)


def test_a_scan_window_by_window_from_the_end_equals_one_scan_to_float_rounding():
    x, _, done = episodes(3000, neurons=4, seed=11)  # windows inside, across and beside the scan's own blocks
    whole = reverse_discounted_sum(x, done, 0.99)
    out, after = torch.empty_like(x), None
    cuts = [0, 7, 500, 1401, 1402, 2999, 3000]
    for lo, hi in reversed(list(zip(cuts[:-1], cuts[1:], strict=True))):
        reverse_discounted_sum(x[lo:hi], done[lo:hi], 0.99, out=out[lo:hi], after=after)
        after = out[lo].clone()
    assert torch.allclose(out, whole, rtol=1e-5, atol=1e-5)


def formula(x, valid, eps=1e-8):
    """Per-neuron standardization over the valid ticks, in one pass over all neurons."""
    m = valid.float().unsqueeze(-1)
    count = m.sum((0, 1)).clamp(min=1.0)
    mean = (x * m).sum((0, 1)) / count
    var = (((x - mean) * m) ** 2).sum((0, 1)) / count
    return (x - mean) / (var.sqrt() + eps) * m


def test_normalizing_a_population_within_one_slice_gives_the_formulas_bits_in_place_or_not():
    x, _, done = episodes(200, neurons=9, seed=7)
    valid = torch.rand(200, 6, generator=torch.Generator().manual_seed(8)) < 0.7
    expected = formula(x, valid)
    assert torch.equal(normalize_per_neuron(x, valid), expected)
    assert normalize_per_neuron(x, valid, out=x) is x
    assert torch.equal(x, expected)


def test_a_wide_population_is_normalized_a_slice_of_neurons_at_a_time_to_float_rounding(monkeypatch):
    import narla.learning.returns as returns

    x, _, done = episodes(200, neurons=9, seed=9)
    valid = torch.rand(200, 6, generator=torch.Generator().manual_seed(10)) < 0.7
    monkeypatch.setattr(returns, "MIN_SLICE", 1)
    monkeypatch.setattr(returns, "COLUMN_BUDGET", 200 * 6 * 2)  # two neurons per slice, the last one alone
    out = normalize_per_neuron(x, valid)
    assert torch.allclose(out, formula(x, valid), rtol=1e-5, atol=1e-6)
    assert torch.all(out[~valid] == 0)


def test_the_episode_tally_averages_the_returns_of_the_episodes_that_ended_since_the_last_take():
    tally = EpisodeTally(2)
    tally.add(torch.tensor([1.0, 2.0]), torch.tensor([False, False]))
    tally.add(torch.tensor([1.0, 2.0]), torch.tensor([True, False]))  # copy 0 ends with 2
    assert tally.take() == (1, 2.0)
    assert tally.take() == (0, None)
    tally.add(torch.tensor([5.0, 2.0]), torch.tensor([True, True]))  # copy 0 restarted: 5; copy 1 ends with 6
    assert tally.take() == (2, 5.5)


def test_a_slice_takes_at_least_min_slice_neurons_however_long_the_batch(monkeypatch):
    import narla.learning.returns as returns

    monkeypatch.setattr(returns, "COLUMN_BUDGET", 10)  # less than one neuron's T x B
    assert returns.slice_width(torch.zeros(50, 4, 100)) == returns.MIN_SLICE
    monkeypatch.setattr(returns, "COLUMN_BUDGET", 50 * 4 * 40)
    assert returns.slice_width(torch.zeros(50, 4, 100)) == 40
