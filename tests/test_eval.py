"""Evaluation: how many episodes run at once changes nothing but speed and memory, and an
evaluation batch is one graph call with its whole inner loop inside.

Episodes are independent, so `--eval-parallel` (episodes per call) must not change any
result: checked in float64, where the per-episode arithmetic is the same whatever the
grouping, on episodes sampled from a generated Omniglot tree.
"""

import random

import numpy as np
import pytest
import tensorflow as tf

from helpers import fake_omniglot
from supervised_reptile.running import budget
from supervised_reptile import omniglot
from supervised_reptile.eval import evaluate, sample_episode
from supervised_reptile.models import miniimagenet_model, omniglot_model
from supervised_reptile.optimizers import Adam
from supervised_reptile.reptile import Reptile

EPISODES = 8


@pytest.fixture(scope='module')
def characters(tmp_path_factory):
    """20 generated characters of 6 drawings each."""
    return omniglot.read_dataset(str(fake_omniglot(tmp_path_factory.mktemp('eval'), num_chars=20, images=6)))


def float64_algo(transductive):
    """A Reptile on a float64 Omniglot model with seeded random weights."""
    tf.keras.utils.set_random_seed(4)
    return Reptile(omniglot_model(5, dtype='float64'), Adam(1e-3), transductive=transductive)


@pytest.mark.parametrize('transductive', [True, pytest.param(False, marks=pytest.mark.slow)])
def test_episodes_per_call_do_not_change_results(characters, transductive):
    """1, 3 (uneven: the last call is smaller) and 25 (more than there are) episodes per
    call, and the default (memory-derived), give the same tasks, the same correct counts
    and, in float64, the same query logits."""
    algo = float64_algo(transductive)
    outcomes, logits = {}, {}
    for per_call in (1, 3, 25, None):
        random.seed(0)
        outcomes[per_call] = evaluate(algo, characters, num_classes=5, num_shots=2, eval_inner_batch_size=5,
                                      eval_inner_iters=3, num_samples=EPISODES, episodes_per_call=per_call)
        random.seed(0)
        episodes = [sample_episode(characters, 5, 2, 5, 3, False) for _ in range(EPISODES)]
        logits[per_call] = np.concatenate([algo.evaluate([(e.task, e.query_images) for e in episodes[i:i + step]])
                                           for step in [per_call or EPISODES] for i in range(0, EPISODES, step)])
    assert len(outcomes[1]) == EPISODES
    for per_call in (3, 25, None):
        assert outcomes[per_call] == outcomes[1]
        np.testing.assert_allclose(logits[per_call], logits[1], rtol=0, atol=1e-12)


def test_default_episodes_per_call_fit_the_budget():
    """The memory-derived count keeps the estimate within the budget, gives Mini-ImageNet's
    5-shot evaluation a few episodes and Omniglot's 1-shot one more, at least one, and on
    a CPU at most CPU_MAX_EPISODES."""
    limit = budget.budget_bytes('CPU')
    assert 0 < limit <= budget.CPU_BUDGET_CAP
    mini = Reptile(miniimagenet_model(5), Adam(1e-3))
    omni = Reptile(omniglot_model(5), Adam(1e-3))
    for algo, shots, batch in ((mini, 5, 15), (omni, 1, 5)):
        count = budget.episodes_per_call(algo, 5, shots, batch, 'CPU')
        assert 1 <= count <= budget.CPU_MAX_EPISODES
        assert count * budget.episode_bytes(algo, 5, shots, batch) <= limit
    assert budget.episodes_per_call(mini, 5, 5, 15, 'CPU') < budget.episodes_per_call(omni, 5, 1, 5, 'CPU')


def test_an_evaluation_batch_is_one_graph_call_with_the_inner_loop_inside(characters, monkeypatch):
    """The inner steps of a batch of episodes run inside one tf.function call: the graph
    holds a while loop and no Python callback, and the step's Python code runs only while
    tracing (once), not once per inner step or per call. On a GPU the loop thus stays on
    the device; only the episodes' images go in and the logits come out."""
    algo = float64_algo(transductive=True)
    steps = []
    step = Reptile._step
    monkeypatch.setattr(Reptile, '_step', lambda self, *args: steps.append(1) or step(self, *args))
    random.seed(1)
    episodes = [sample_episode(characters, 5, 2, 5, 50, False) for _ in range(4)]
    pairs = [(e.task, e.query_images) for e in episodes]
    algo.evaluate(pairs)
    traced = len(steps)
    algo.evaluate(pairs)
    assert traced == 1 and len(steps) == 1  # 50 inner steps, twice, and no Python step after tracing
    from supervised_reptile.reptile import stack_episodes
    graph = algo._evaluate.get_concrete_function(*stack_episodes(pairs)).graph
    ops = {op.type for op in graph.get_operations()}
    assert {'While', 'StatelessWhile'} & ops, sorted(ops)
    assert not {'PyFunc', 'EagerPyFunc', 'PyFuncStateless'} & ops
