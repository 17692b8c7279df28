"""Independent learners on a CartPole neuron population, written only against the PettingZoo Parallel API.

Every neuron of the network is an agent with its own linear softmax policy over its own observation
(what its synapses carry), trained by REINFORCE on its own reward (the scenario's reward scheme).
Nothing here touches narla's engine: swap ``parallel_env`` for any PettingZoo Parallel environment
with Discrete actions and Box observations and the loop runs unchanged.

    python examples/independent_learners.py --episodes 200 --seed 0
"""

from __future__ import annotations

import argparse

import numpy as np

from narla.envs import parallel_env

# A 2-layer NaRLA network (15 hidden neurons + 1 motor neuron) on CartPole, with biological rewards.
SCENARIO = {
    "name": "independent_learners_cartpole",
    "task": {"id": "cartpole"},
    "network": {"builder": "layered", "layers": 2, "width": 15},
    "neuron": {"hidden": [16]},  # the engine's own policies are not used here
    "rewards": ["task", "activity", "sparsity", "prediction"],
}


class LinearLearner:
    """A softmax policy ``pi(a | o) = softmax(W [o, 1])`` trained by REINFORCE on one agent's rewards."""

    def __init__(self, obs_dim: int, n_actions: int, rng: np.random.Generator, lr: float = 0.01, gamma: float = 0.99):
        self.w = np.zeros((n_actions, obs_dim + 1))
        self.rng, self.lr, self.gamma = rng, lr, gamma
        self.grads: list[np.ndarray] = []
        self.rewards: list[float] = []

    def act(self, obs: np.ndarray) -> int:
        x = np.append(obs, 1.0)
        logits = self.w @ x
        p = np.exp(logits - logits.max())
        p /= p.sum()
        action = int(self.rng.choice(len(p), p=p))
        self.grads.append(np.outer(np.eye(len(p))[action] - p, x))  # d log pi(a | o) / dW
        return action

    def learn(self) -> None:
        returns, g = np.zeros(len(self.rewards)), 0.0
        for t in reversed(range(len(self.rewards))):
            g = self.rewards[t] + self.gamma * g
            returns[t] = g
        returns = (returns - returns.mean()) / (returns.std() + 1e-8)
        self.w += self.lr * sum(r * grad for r, grad in zip(returns, self.grads, strict=True))
        self.grads, self.rewards = [], []


def run(episodes: int = 20, seed: int = 0) -> list[float]:
    """Train one independent learner per neuron for ``episodes`` episodes; returns each episode's task return."""
    env = parallel_env(SCENARIO)
    rng = np.random.default_rng(seed)
    learners = {
        agent: LinearLearner(env.observation_space(agent).shape[0], env.action_space(agent).n, rng)
        for agent in env.possible_agents
    }
    returns = []
    for episode in range(episodes):
        observations, _ = env.reset(seed=seed if episode == 0 else None)
        task_return = 0.0
        while env.agents:
            actions = {agent: learners[agent].act(observations[agent]) for agent in env.agents}
            observations, rewards, _, _, infos = env.step(actions)
            for agent, reward in rewards.items():
                learners[agent].rewards.append(reward)
            task_return += next(iter(infos.values()))["task_reward"]
        for learner in learners.values():
            learner.learn()
        returns.append(task_return)
    env.close()
    return returns


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    history = run(args.episodes, args.seed)
    for start in range(0, len(history), 20):
        window = history[start : start + 20]
        print(f"episodes {start + 1:4d}-{start + len(window):4d}: mean task return {np.mean(window):7.1f}")
