"""The toy world: seeded scenes, rendering, dynamics and the scripted expert."""

import numpy as np
import pytest

from torchtitan_vla.envs.toyworld import ToyWorld, WorldConfig, demo_episode, expert_chunk, render_scene, sample_scene
from torchtitan_vla.envs.toyworld.instructions import caption, document_texts
from torchtitan_vla.envs.toyworld.render import PALETTE, table_color, world_to_pixel


def test_same_seed_gives_same_scene_and_image():
    a, b = sample_scene((0, 5)), sample_scene((0, 5))
    assert a == b
    np.testing.assert_array_equal(render_scene(a), render_scene(b))
    others = [sample_scene((0, i)) for i in range(6, 12)]
    assert all(o != a for o in others)


@pytest.mark.parametrize("shared_attributes", [False, True])
def test_scene_needs_both_instruction_and_image(shared_attributes):
    config = WorldConfig(shared_attributes=shared_attributes)
    targets_cells, target_indices = set(), set()
    for i in range(50):
        scene = sample_scene((1, i), config)
        target = scene.shapes[scene.target]
        others = [s for j, s in enumerate(scene.shapes) if j != scene.target]
        assert len({(s.color, s.kind) for s in scene.shapes}) == len(scene.shapes)
        if shared_attributes:
            assert any(s.color == target.color for s in others), "colour alone must not identify the target"
            assert any(s.kind == target.kind for s in others), "kind alone must not identify the target"
        else:
            assert len({s.color for s in scene.shapes}) == len({s.kind for s in scene.shapes}) == len(scene.shapes)
        assert scene.instruction.endswith(f"the {target.color} {target.kind}")
        centers = np.array([s.xy for s in scene.shapes])
        assert np.linalg.norm(centers - np.array(scene.agent_start), axis=1).min() >= scene.config.min_start_distance
        targets_cells.add((target.row, target.col))
        target_indices.add(scene.target)
    assert len(targets_cells) == 9, "the target's place varies, so the image is needed"
    assert target_indices == {0, 1, 2}, "any of the shapes may be the target, so the instruction is needed"


def test_renderer_draws_each_shape_with_its_colour_kind_and_place():
    config = WorldConfig()
    h, size = config.shape_half_size, config.image_size

    def pixel(image, xy):
        return tuple(image[world_to_pixel(xy, size)])

    for i in range(20):
        scene = sample_scene((2, i), config)
        image = render_scene(scene)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        for shape in scene.shapes:
            cx, cy = shape.xy
            color = PALETTE[shape.color]
            assert pixel(image, (cx, cy)) == color
            corner = pixel(image, (cx + 0.9 * h, cy + 0.9 * h)) == color  # inside the square only
            side = pixel(image, (cx - 0.6 * h, cy)) == color  # inside the square and the circle, not the triangle
            top = pixel(image, (cx, cy + 0.5 * h)) == color  # inside all three
            expected = {"square": (True, True), "circle": (False, True), "triangle": (False, False)}
            assert (corner, side) == expected[shape.kind], shape
            assert top
    agent = np.array(scene.agent_start)
    assert pixel(image, agent + [0.07, 0]) == (0, 0, 0), "the agent is a black ring"
    row, col = world_to_pixel(agent, size)
    assert pixel(image, agent) == tuple(table_color((col + 0.5) / size * 2 - 1, 1 - (row + 0.5) / size * 2))


def test_table_shading_shows_where_a_patch_is():
    right, left = table_color(0.9, 0.0), table_color(-0.9, 0.0)
    top, bottom = table_color(0.0, 0.9), table_color(0.0, -0.9)
    assert right[0] > left[0] + 50 and right[2] == left[2]
    assert top[2] > bottom[2] + 50 and top[0] == bottom[0]
    corners = [table_color(x, y).astype(int) for x in (-1, 1) for y in (-1, 1)]
    distances = [np.abs(c - np.array(rgb)).sum() for c in corners for rgb in PALETTE.values()]
    assert min(distances) > 100, "shapes stay distinct from the table everywhere"


def test_step_clips_speed_and_keeps_agent_on_table():
    world = ToyWorld.from_seed(2, seed=3)
    start = world.positions.copy()
    world.step(np.array([[1.0, 0.0], [0.0, -0.05]]))
    np.testing.assert_allclose(world.positions - start, [[world.config.max_speed, 0], [0, -0.05]], atol=1e-6)
    for _ in range(30):
        world.step(np.array([[1.0, 1.0], [-1.0, -1.0]]))
    np.testing.assert_array_equal(world.positions, [[1, 1], [-1, -1]])
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 2\)"):
        world.step(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        world.step(np.full((2, 2), np.nan))


def test_bad_world_config_is_rejected():
    with pytest.raises(ValueError, match="num_shapes=10"):
        WorldConfig(num_shapes=10)
    with pytest.raises(ValueError, match="exceeds half a grid cell"):
        WorldConfig(shape_half_size=0.4)
    with pytest.raises(ValueError, match="needs as many colours"):
        WorldConfig(num_shapes=4)
    WorldConfig(num_shapes=4, shared_attributes=True)


def test_demo_reaches_target_and_matches_expert_chunks():
    for i in range(20):
        scene = sample_scene((4, i))
        episode = demo_episode(scene, hold_steps=3)
        state, action = episode["state"], episode["action"]
        frames = episode["frames"]["observation.images.top"]
        assert frames.shape == (len(state), 96, 96, 3) and state.shape == action.shape == (len(state), 2)
        assert episode["task"] == scene.instruction
        np.testing.assert_allclose(state[0], scene.agent_start, atol=1e-6)
        np.testing.assert_allclose(state[1:], state[:-1] + action[:-1], atol=1e-5)
        np.testing.assert_allclose(state[-1], scene.target_xy, atol=1e-4)
        assert np.abs(action[-3:]).max() == 0, "the demo ends standing still on the target"
        assert np.linalg.norm(action, axis=1).max() <= scene.config.max_speed + 1e-6
        chunk = expert_chunk(state[:1], scene.target_xy[None], horizon=8, max_speed=scene.config.max_speed)[0]
        n = min(8, len(action))
        np.testing.assert_allclose(chunk[:n], action[:n], atol=1e-5)


def test_texts_ground_colours_kinds_and_places():
    scene = sample_scene((5, 0))
    text = caption(scene)
    for shape in scene.shapes:
        assert shape.name in text
    intro, middle, outro = document_texts(scene, np.random.default_rng(0))
    assert "three shapes" in intro and scene.instruction in outro
    assert all(shape.name in middle for shape in scene.shapes)
