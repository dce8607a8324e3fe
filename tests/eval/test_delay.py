"""Simulated inference delay: which chunk rows run when, what the policy is sent, jumps at switches."""

import numpy as np
import pytest

from torchtitan_vla.envs.toyworld.world import ToyWorld
from torchtitan_vla.eval.closed_loop import ScriptedPolicy, run_closed_loop
from torchtitan_vla.eval.delay import DelaySchedule, run_delayed

HORIZON = 8


def _trace(execution, delay, steps=14, max_delay=None):
    """Chunk k has rows 100 k + row; the idle action is -1. -> (executed values, requests, jumps)."""
    executed, requests = [], []

    def request(prev, d):
        requests.append((len(executed), None if prev is None else prev[0, :, 0].tolist(), d))
        k = len(requests)
        return (100 * k + np.arange(HORIZON, dtype=np.float32))[None, :, None]

    def step(action):
        executed.append(float(action[0, 0]))
        return len(executed) >= steps

    jumps = run_delayed(request, step, 4, DelaySchedule(execution, delay, max_delay), np.full((1, 1), -1.0))
    return executed, requests, [float(j[0]) for j in jumps]


def test_sync_waits_the_delay_before_every_chunk():
    executed, requests, jumps = _trace("sync", 2)
    assert executed == [-1, -1, 100, 101, 102, 103, -1, -1, 200, 201, 202, 203, -1, -1]
    # The run ends while the third chunk is awaited: that switch never happens.
    assert [r[0] for r in requests] == [0, 6, 12] and jumps == [97]


@pytest.mark.parametrize("execution", ["naive", "rtc"])
def test_async_keeps_executing_the_old_chunk_while_the_next_is_computed(execution):
    executed, requests, jumps = _trace(execution, 2)
    # The next chunk is requested 2 steps before the old one's row 4 is due and continues at its row 2.
    assert executed == [-1, -1, 100, 101, 102, 103, 202, 203, 302, 303, 402, 403, 502, 503]
    assert [r[0] for r in requests] == [0, 4, 6, 8, 10, 12]
    if execution == "rtc":
        assert requests[1][1:] == ([102, 103, 104, 105, 106, 107], 2)  # the rest of the old chunk, aligned
        assert requests[2][1:] == ([202, 203, 204, 205, 206, 207], 2)
    else:
        assert all(r[1] is None for r in requests)
    assert jumps[0] == 99


def test_zero_delay_sync_is_the_plain_receding_horizon():
    executed, requests, _ = _trace("sync", 0, steps=10)
    assert executed == [100, 101, 102, 103, 200, 201, 202, 203, 300, 301]


def test_random_delay_stays_in_range_and_is_reproducible():
    schedule = DelaySchedule("naive", 1, 3, seed=5)
    draws = [schedule.draw(4) for _ in range(200)]
    assert set(draws) == {1, 2, 3}
    again = DelaySchedule("naive", 1, 3, seed=5)
    assert draws == [again.draw(4) for _ in range(200)]
    with pytest.raises(ValueError, match="max_delay 5 exceeds execute_steps 4"):
        DelaySchedule("rtc", 0, 5).draw(4)


def test_pausing_costs_the_scripted_expert_time_and_async_does_not():
    def result(schedule):
        world = ToyWorld.from_seed(20, 1234)
        return run_closed_loop(ScriptedPolicy(world), world, 40, 4, schedule)

    plain, sync, naive = result(None), result(DelaySchedule("sync", 3)), result(DelaySchedule("naive", 3))
    assert plain.success_rate == 1.0 and naive.success_rate == 1.0
    assert sync.mean_steps > naive.mean_steps >= plain.mean_steps
