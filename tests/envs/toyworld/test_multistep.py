"""The multi-step toy world: two targets in order, per-segment subtask labels, visited targets drawn hollow."""

import numpy as np

from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.envs.toyworld import ToyWorld, WorldConfig, demo_episode, render_table, sample_scene
from torchtitan_vla.envs.toyworld.generate import GenerateConfig, _manifest, generate
from torchtitan_vla.envs.toyworld.render import PALETTE

TWO = WorldConfig(num_targets=2)


def test_single_target_scenes_are_unchanged_by_the_multi_step_option():
    for i in range(20):
        one, two = sample_scene((0, i)), sample_scene((0, i), TWO)
        assert (one.shapes, one.target, one.agent_start) == (two.shapes, two.target, two.agent_start)
        assert one.then == () and two.then and two.then[0] != two.target
        first, second = (two.shapes[k].name for k in two.targets)
        assert two.instruction.startswith(one.instruction) and two.instruction.endswith(f", then to the {second}")
        assert (two.subtask(0), two.subtask(1)) == (f"go to the {first}", f"go to the {second}")
    assert "num_targets" not in _manifest(GenerateConfig())["world"]  # data made before it still matches


def test_success_needs_both_targets_in_order():
    scene = sample_scene((0, 1), TWO)
    first, second = (np.asarray(scene.shapes[k].xy, np.float32) for k in scene.targets)
    world = ToyWorld([scene])
    world.positions[:] = second - [0.3, 0.0]  # next to the second target before visiting the first
    world.step(np.array([[0.1, 0.0]]))
    assert world.stage[0] == 0 and not world.success[0] and world.subtasks() == [scene.subtask(0)]
    world.positions[:] = first
    world.step(np.zeros((1, 2)))
    assert world.stage[0] == 1 and world.subtasks() == [scene.subtask(1)]
    np.testing.assert_allclose(world.targets[0], second)
    assert not world.success[0]  # at the first target, the second still to go
    world.positions[:] = second
    world.step(np.zeros((1, 2)))
    assert world.success[0]


def test_a_visited_target_is_drawn_hollow_so_the_image_shows_the_segment():
    scene = sample_scene((0, 2), TWO)
    before, after = render_table(scene), render_table(scene, visited=1)
    visited = scene.shapes[scene.target]
    cx, cy = visited.xy
    size = scene.config.image_size
    col, row = int((cx + 1) / 2 * size), int((1 - cy) / 2 * size)
    assert tuple(before[row, col]) == PALETTE[visited.color]
    assert tuple(after[row, col]) != PALETTE[visited.color]  # hollow: the table shows through its centre
    edge = col + int(0.18 / 2 * size)  # inside its 0.06-wide outline (squares and circles; triangles differ)
    if visited.kind != "triangle":
        assert tuple(after[row, edge]) == PALETTE[visited.color]
    others = [s for i, s in enumerate(scene.shapes) if i != scene.target]
    for shape in others:
        x, y = shape.xy
        r, c = int((1 - y) / 2 * size), int((x + 1) / 2 * size)
        np.testing.assert_array_equal(before[r, c], after[r, c])


def test_demonstration_labels_each_frame_with_its_segment():
    scene = sample_scene((0, 3), TWO)
    episode = demo_episode(scene)
    labels = episode["subtask"]
    assert len(labels) == len(episode["state"])
    switch = labels.index(scene.subtask(1))
    assert set(labels[:switch]) == {scene.subtask(0)} and set(labels[switch:]) == {scene.subtask(1)}
    first = np.asarray(scene.shapes[scene.target].xy)
    assert np.linalg.norm(episode["state"][switch] - first) <= scene.config.success_radius  # visited there
    frames = episode["frames"]["observation.images.top"]
    hollow = render_table(scene, visited=1)
    filled = render_table(scene)
    # the frames of the second segment show the hollow first target, those of the first the filled one
    changed = (hollow != filled).any(axis=2)
    assert (frames[switch][changed] == hollow[changed]).mean() > 0.8
    assert (frames[switch - 1][changed] == filled[changed]).mean() > 0.8
    assert "subtask" not in demo_episode(sample_scene((0, 3)))


def test_generated_multi_step_data_carries_a_per_frame_subtask_column(tmp_path):
    config = GenerateConfig(seed=3, episodes=3, captions=2, documents=2, world=TWO)
    generate(str(tmp_path), config)
    reader = LeRobotReader(str(tmp_path / "robot"))
    ep = reader.episodes[0]
    labels = list(reader.language["subtask"][ep.start:ep.start + ep.length])
    scene_labels = demo_episode(sample_scene(np.random.default_rng((3, 0, 0)), TWO))["subtask"]
    assert labels == scene_labels and len(set(labels)) == 2
    assert ", then to the " in reader.task(ep, 0)
