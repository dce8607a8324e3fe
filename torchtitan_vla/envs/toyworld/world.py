"""The toy world: a square table with coloured shapes and an agent that must reach the one it is told to.

Coordinates are in [-1, 1]^2 with x to the right and y up (the top of the image is y = +1), so the agent's
position is already a normalized proprioceptive state. Shapes sit in the cells of a coarse grid (one shape
per cell, jittered inside it): with 96x96 images, 16-pixel patches and the 2x2 patch merger, each cell of
the 3x3 grid is exactly one visual token, which keeps "which shape is where" learnable by a tiny model.

A scene is chosen so that the instruction is needed: any shape may be the target; and the image is needed:
positions are random. By default every shape has its own colour and kind; ``shared_attributes`` makes the
target share its colour with one shape and its kind with another, so only both words together name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .instructions import instruction_for, subtask_for

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
KINDS: tuple[str, ...] = ("square", "circle", "triangle")


@dataclass(frozen=True)
class WorldConfig:
    image_size: int = 96
    """Side of the rendered square RGB image, in pixels."""

    grid_size: int = 3
    """Shapes sit in the cells of a grid_size x grid_size grid, at most one per cell."""

    num_shapes: int = 3
    """Shapes on the table; each (colour, kind) pair appears at most once."""

    colors: tuple[str, ...] = COLORS
    """Colour names the world may use (each must be in ``render.PALETTE``)."""

    kinds: tuple[str, ...] = KINDS
    """Shape kinds the world may use."""

    shape_half_size: float = 0.2
    """Half the side of a shape's bounding box, in world units (the table spans 2)."""

    jitter: float = 0.06
    """Largest offset of a shape from its cell's centre, per axis, in world units."""

    max_speed: float = 0.12
    """Largest distance the agent moves in one step; longer actions are scaled down to it."""

    success_radius: float = 0.2
    """The episode succeeds once the agent is this close to the named shape's centre."""

    min_start_distance: float = 0.45
    """The agent starts at least this far from every shape, so no episode succeeds without moving."""

    num_targets: int = 1
    """Shapes to visit, in order. 1: "move to the red square". 2 (the multi-step world): "go to the red
    square, then to the blue circle", with one subtask label per segment ("go to the red square"). A
    visited target is drawn hollow from then on, so the image tells which segment the agent is in and a
    policy without memory can know its current subtask."""

    shared_attributes: bool = False
    """False: every shape on a table has its own colour and its own kind, so either word of the instruction
    names the target. True (harder): the target shares its colour with one shape and its kind with another,
    so only the two words together do, and a policy has to bind them."""

    def __post_init__(self):
        if self.num_shapes < 1 or self.num_shapes > self.grid_size**2:
            raise ValueError(f"num_shapes={self.num_shapes} must be in [1, grid_size**2={self.grid_size**2}]")
        if not 1 <= self.num_targets <= self.num_shapes:
            raise ValueError(f"num_targets={self.num_targets} must be in [1, num_shapes={self.num_shapes}]")
        if self.num_shapes > len(self.colors) * len(self.kinds):
            raise ValueError(f"num_shapes={self.num_shapes} exceeds the {len(self.colors) * len(self.kinds)} distinct (colour, kind) pairs")
        if not self.shared_attributes and self.num_shapes > min(len(self.colors), len(self.kinds)):
            raise ValueError(f"num_shapes={self.num_shapes} needs as many colours ({len(self.colors)}) and kinds "
                             f"({len(self.kinds)}) when every shape has its own (shared_attributes=False)")
        if self.shared_attributes and self.num_shapes >= 3 and (len(self.colors) < 2 or len(self.kinds) < 2):
            raise ValueError("with num_shapes >= 3 the world needs at least 2 colours and 2 kinds so distractors can share one attribute")
        cell = 2.0 / self.grid_size
        if self.shape_half_size + self.jitter > cell / 2:
            raise ValueError(f"shape_half_size + jitter = {self.shape_half_size + self.jitter} exceeds half a grid cell ({cell / 2}): shapes would overlap")
        if self.max_speed <= 0 or self.success_radius <= 0:
            raise ValueError(f"max_speed ({self.max_speed}) and success_radius ({self.success_radius}) must be positive")


@dataclass(frozen=True)
class Shape:
    color: str
    """Colour name, e.g. ``red``."""

    kind: str
    """Shape kind: ``square``, ``circle`` or ``triangle``."""

    row: int
    """Grid row, 0 = top."""

    col: int
    """Grid column, 0 = left."""

    xy: tuple[float, float]
    """Centre in world coordinates."""

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    """The shapes on the table."""

    target: int
    """Index into ``shapes`` of the shape the instruction names."""

    agent_start: tuple[float, float]
    """Where the agent starts, in world coordinates."""

    instruction: str
    """The instruction naming the target, e.g. ``move to the red square``."""

    config: WorldConfig = field(default_factory=WorldConfig)
    """The world this scene belongs to."""

    then: tuple[int, ...] = ()
    """Indices of the shapes to visit after ``target``, in order (multi-step worlds)."""

    @property
    def targets(self) -> tuple[int, ...]:
        """Every shape to visit, in order."""
        return (self.target, *self.then)

    def subtask(self, stage: int) -> str:
        """The label of segment ``stage``: ``go to the <shape>``."""
        return subtask_for(self.shapes[self.targets[stage]])

    @property
    def target_xy(self) -> np.ndarray:
        return np.asarray(self.shapes[self.target].xy, dtype=np.float32)


def cell_center(row: int, col: int, grid_size: int) -> tuple[float, float]:
    """World coordinates of a grid cell's centre (row 0 is the top)."""
    cell = 2.0 / grid_size
    return -1.0 + cell * (col + 0.5), 1.0 - cell * (row + 0.5)


def _pick_pairs(rng: np.random.Generator, config: WorldConfig) -> tuple[list[tuple[str, str]], int]:
    """The shapes' (colour, kind) pairs and the target's index (see ``WorldConfig.shared_attributes``)."""
    if not config.shared_attributes:
        colors = rng.permutation(len(config.colors))[: config.num_shapes]
        kinds = rng.permutation(len(config.kinds))[: config.num_shapes]
        pairs = [(config.colors[c], config.kinds[k]) for c, k in zip(colors, kinds)]
        return pairs, int(rng.integers(config.num_shapes))
    all_pairs = [(c, k) for c in config.colors for k in config.kinds]
    target = all_pairs[rng.integers(len(all_pairs))]
    pairs = [target]
    if config.num_shapes >= 2:
        same_color = [p for p in all_pairs if p[0] == target[0] and p != target]
        pairs.append(same_color[rng.integers(len(same_color))])
    if config.num_shapes >= 3:
        same_kind = [p for p in all_pairs if p[1] == target[1] and p != target]
        pairs.append(same_kind[rng.integers(len(same_kind))])
    rest = [p for p in all_pairs if p not in pairs]
    for i in rng.permutation(len(rest))[: config.num_shapes - len(pairs)]:
        pairs.append(rest[i])
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order], int(np.argmax(order == 0))


def sample_scene(seed: int | tuple[int, ...] | np.random.Generator, config: WorldConfig | None = None) -> Scene:
    """A random scene; the same seed always gives the same scene."""
    config = config or WorldConfig()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pairs, target = _pick_pairs(rng, config)
    cells = rng.choice(config.grid_size**2, size=config.num_shapes, replace=False)
    shapes = []
    for (color, kind), cell in zip(pairs, cells):
        row, col = divmod(int(cell), config.grid_size)
        cx, cy = cell_center(row, col, config.grid_size)
        dx, dy = rng.uniform(-config.jitter, config.jitter, size=2)
        shapes.append(Shape(color, kind, row, col, (float(cx + dx), float(cy + dy))))
    centers = np.array([s.xy for s in shapes])
    while True:  # rejection sampling; the free area is large, so this ends after a few draws
        start = rng.uniform(-0.95, 0.95, size=2)
        if np.linalg.norm(centers - start, axis=1).min() >= config.min_start_distance:
            break
    instruction = instruction_for(shapes[target], rng)
    then: tuple[int, ...] = ()
    if config.num_targets > 1:  # drawn after everything else, so single-target scenes stay as they were
        others = [i for i in range(config.num_shapes) if i != target]
        then = tuple(int(others[i]) for i in rng.permutation(len(others))[: config.num_targets - 1])
        instruction = instruction + "".join(f", then to the {shapes[i].name}" for i in then)
    return Scene(tuple(shapes), target, (float(start[0]), float(start[1])), instruction, config, then)


def episode_seed(seed: int, index: int) -> tuple[int, int]:
    """Seed of episode ``index`` in a set drawn with ``seed`` (independent streams per episode)."""
    return (int(seed), int(index))


def clip_speed(actions: np.ndarray, max_speed: float) -> np.ndarray:
    """Scale each action (..., 2) down to at most ``max_speed`` long, keeping its direction."""
    actions = np.asarray(actions, dtype=np.float32)
    norm = np.linalg.norm(actions, axis=-1, keepdims=True)
    return actions * np.minimum(1.0, max_speed / np.maximum(norm, 1e-12))


def move(positions: np.ndarray, actions: np.ndarray, max_speed: float) -> np.ndarray:
    """The world's dynamics: each position (..., 2) moves by its action, speed-clipped, and stays on the table."""
    return np.clip(np.asarray(positions, np.float32) + clip_speed(actions, max_speed), -1.0, 1.0)


class ToyWorld:
    """A batch of episodes stepped together (one row per scene).

    ``step`` moves every agent by its (speed-clipped) action and keeps it on the table. An episode succeeds
    when its agent is within ``success_radius`` of the named shape when the episode ends, so passing over the
    target on the way to another shape does not count: a policy has to go to the right shape and stay.
    ``reached_step`` records when each agent first got there (-1: not yet).

    Multi-step worlds: ``stage`` counts the targets visited; coming within ``success_radius`` of the current
    target visits it and makes the next one current (``targets``), and success means being at the last one
    after visiting the others in order.
    """

    def __init__(self, scenes: list[Scene]):
        if not scenes:
            raise ValueError("ToyWorld needs at least one scene")
        configs = {s.config for s in scenes}
        if len(configs) != 1:
            raise ValueError("all scenes of a ToyWorld must share one WorldConfig")
        self.config: WorldConfig = scenes[0].config
        self.scenes = list(scenes)
        self.stage = np.zeros(len(scenes), dtype=np.int64)
        self.targets = np.stack([s.target_xy for s in scenes])
        self.positions = np.array([s.agent_start for s in scenes], dtype=np.float32)
        self.num_steps = 0
        self.reached_step = np.where(self.success, 0, -1)

    @classmethod
    def from_seed(cls, num_episodes: int, seed: int, config: WorldConfig | None = None) -> ToyWorld:
        return cls([sample_scene(episode_seed(seed, i), config) for i in range(num_episodes)])

    def __len__(self) -> int:
        return len(self.scenes)

    def distances(self) -> np.ndarray:
        """Distance of each agent to its target."""
        return np.linalg.norm(self.positions - self.targets, axis=1)

    @property
    def success(self) -> np.ndarray:
        """Whether each agent is at its (last) target now, the earlier ones visited in order."""
        return (self.distances() <= self.config.success_radius) & (self.stage == self.config.num_targets - 1)

    def subtasks(self) -> list[str]:
        """Each episode's current subtask label (the true subtask)."""
        return [scene.subtask(int(stage)) for scene, stage in zip(self.scenes, self.stage)]

    def step(self, actions: np.ndarray) -> None:
        """Apply one action (N, 2) per episode."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (len(self), 2):
            raise ValueError(f"actions must have shape ({len(self)}, 2), got {tuple(actions.shape)}")
        if not np.isfinite(actions).all():
            raise ValueError("actions contain NaN or inf")
        self.positions = move(self.positions, actions, self.config.max_speed)
        self.num_steps += 1
        visit = (self.distances() <= self.config.success_radius) & (self.stage < self.config.num_targets - 1)
        for i in np.flatnonzero(visit):
            self.stage[i] += 1
            self.targets[i] = self.scenes[i].shapes[self.scenes[i].targets[self.stage[i]]].xy
        self.reached_step = np.where((self.reached_step < 0) & self.success, self.num_steps, self.reached_step)
