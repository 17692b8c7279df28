"""Per-neuron evolution strategies: batched members, own-reward updates, reduction to ordinary ES, resume."""

import copy
import json

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from narla.learning.es import PerNeuronES, centered_ranks
from narla.neurons.population import Population
from narla.rollout import collect
from narla.scenario import ScenarioError, from_dict, load
from narla.training import Trainer, build, resume

ES = {
    "name": "es",
    "seed": 4,
    "task": {"id": "cartpole", "num_envs": 8},
    "network": {"builder": "layered", "layers": 2, "width": 4},
    "neuron": {"hidden": [8]},
    "learning": {"rule": "es", "lr": 0.05, "sigma": 0.1, "population": 2},
    "rewards": ["task"],
    "training": {"max_episodes": 32, "stop_when_solved": False},
}


def scenario(**sections):
    data = json.loads(json.dumps(ES))
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data[key], dict) else value
    return from_dict(data)


def ordinary_es_step(theta, noise, returns, pairs, sigma, lr, shaping):
    """Plain ES on one flat parameter vector: a fitness per member, antithetic pairs, Adam ascent."""
    fit = returns.clone()
    if shaping:
        order = sorted(range(len(fit)), key=lambda i: (float(returns[i]), i))
        for rank, i in enumerate(order):
            fit[i] = rank / (len(fit) - 1) - 0.5
    grad = sum((fit[m] - fit[pairs + m]) * noise[m] for m in range(pairs)) / (2 * pairs * sigma)
    param = torch.nn.Parameter(theta.clone())
    opt = torch.optim.Adam([param], lr=lr, maximize=True)
    param.grad = grad
    opt.step()
    return param.detach()


def perturbed_member(population, deltas: dict, p: int):
    """A separate copy of ``population`` with member ``p``'s perturbation added to every parameter."""
    member = copy.deepcopy(population)
    with torch.no_grad():
        for name, param in member.named_parameters():
            param += deltas[name][p]
    return member


@pytest.mark.parametrize("shaping", ["centered_rank", "none"])
def test_task_reward_only_reduces_to_ordinary_es_on_the_whole_network(shaping):
    s = scenario(learning={"fitness_shaping": shaping})
    run = build(s)
    learner = run.learner
    assert isinstance(learner, PerNeuronES)
    params = list(learner.params.values())
    theta = parameters_to_vector(params).detach().clone()
    noise = torch.stack([torch.cat([e[m].flatten() for e in learner.noise.values()]) for m in range(2)])

    rollout = collect(run.engine, run.task, run.scheme)
    assert torch.equal(rollout.rewards, rollout.task_reward.unsqueeze(-1).expand_as(rollout.rewards))
    member_returns = rollout.task_reward.sum(0).view(4, 2).mean(1)  # 4 members x 2 copies each
    expected = ordinary_es_step(theta, noise, member_returns, 2, 0.1, 0.05, shaping == "centered_rank")

    learner.update(rollout)
    torch.testing.assert_close(parameters_to_vector(params).detach(), expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(expected, theta)


def test_members_are_batched_copies_with_their_own_perturbed_parameters():
    run = build(scenario())
    view, population = run.engine.population, run.learner.population
    n = run.wiring.num_neurons
    x = torch.randn(n, run.wiring.ff_idx.shape[1], 8, device=run.device)
    c = torch.randn(n, run.wiring.ctx_idx.shape[1], 8, device=run.device)
    batched = view(x, c, 0, n)
    for p in range(4):
        member = perturbed_member(population, view.deltas, p)
        cols = slice(2 * p, 2 * p + 2)
        torch.testing.assert_close(batched[..., cols], member(x[..., cols], c[..., cols], 0, n))


def test_each_neuron_is_updated_from_its_own_reward_only():
    run = build(scenario(rewards=["task", "activity"], learning={"fitness_shaping": "none"}))
    rollout = collect(run.engine, run.task, run.scheme)
    base = run.learner.gradient(rollout)
    j = 2
    rollout.rewards[:, :, j] += torch.randn_like(rollout.rewards[:, :, j])
    changed = run.learner.gradient(rollout)
    for name, g in base.items():
        others = [i for i in range(g.shape[0]) if i != j]
        assert torch.equal(g[others], changed[name][others]), name
        assert g[j].numel() == 0 or not torch.equal(g[j], changed[name][j]), name


def test_centered_ranks_per_neuron():
    fit = torch.tensor([[3.0, 0.0], [1.0, 5.0], [2.0, 1.0]])
    assert torch.equal(centered_ranks(fit), torch.tensor([[0.5, -0.5], [-0.5, 0.5], [0.0, 0.0]]))


def test_num_envs_must_fit_the_es_population():
    with pytest.raises(ScenarioError, match="task.num_envs"):
        build(scenario(task={"num_envs": 6}))


def test_es_learns_cartpole_a_little():
    s = scenario(
        task={"num_envs": 16},
        network={"layers": 1},
        learning={"population": 8, "lr": 0.1, "sigma": 0.2},
        training={"max_episodes": 960},
    )
    trainer = Trainer(s, progress=False)
    trainer.train()
    first, last = trainer.returns[:96], trainer.returns[-96:]
    assert sum(last) > 1.5 * sum(first)


def test_es_checkpoint_resume_is_identical(tmp_path):
    straight = Trainer(scenario(training={"checkpoint_every": 16}), tmp_path / "a", progress=False)
    straight.train()
    Trainer(scenario(training={"checkpoint_every": 16, "max_episodes": 16}), tmp_path / "b", progress=False).train()
    resumed = resume(tmp_path / "b", ["training.max_episodes=32"], progress=False)
    resumed.train()
    assert resumed.returns == straight.returns


CONTEXT_NET = "tests/context_net.yaml"
AS_ES = ["task.id=swingup", "task.num_envs=8", "readout.kind=squash", "learning.rule=es", "learning.population=2"]


def test_native_members_match_each_member_run_alone():
    """Context and universal action context: the batched pass equals one copy per member."""
    run = build(load(CONTEXT_NET, AS_ES))
    view, population = run.engine.population, run.learner.population
    assert view.native
    torch.manual_seed(0)
    for start, end in run.engine.stages:
        n = end - start
        x = torch.randn(n, run.wiring.ff_idx.shape[1], 8, device=run.device)
        c = torch.randn(n, run.wiring.ctx_idx.shape[1], 8, device=run.device)
        prev_action = torch.randn(8, population.action_dim, device=run.device) if population.action_dim else None
        batched = view(x, c, start, end, prev_action)
        torch.testing.assert_close(batched, view._vmap_call(x, c, start, end, prev_action))
        for p in range(4):
            member = perturbed_member(population, view.deltas, p)
            cols = slice(2 * p, 2 * p + 2)
            action = None if prev_action is None else prev_action[cols]
            expected = member(x[..., cols], c[..., cols], start, end, prev_action=action)
            torch.testing.assert_close(batched[..., cols], expected)


def test_native_members_cover_the_critic():
    run = build(load(CONTEXT_NET, AS_ES))
    slots = torch.arange(run.wiring.num_neurons)
    slots[1] = 0  # two neurons tied to one row
    slots = torch.unique(slots, return_inverse=True)[1]
    population = Population(run.wiring, hidden=(8,), critic=True, slots=slots)
    deltas = {name: 0.1 * torch.randn(3, *p.shape) for name, p in population.named_parameters()}
    per_neuron = population.member_deltas(deltas)
    n = run.wiring.num_neurons
    x = torch.randn(n, run.wiring.ff_idx.shape[1], 6)
    batched = population.value(x, 0, n, deltas=per_neuron)
    for p in range(3):
        member = copy.deepcopy(population)
        with torch.no_grad():
            for name, param in member.named_parameters():
                param += deltas[name][p]
        torch.testing.assert_close(batched[:, 2 * p : 2 * p + 2], member.value(x[..., 2 * p : 2 * p + 2], 0, n))
