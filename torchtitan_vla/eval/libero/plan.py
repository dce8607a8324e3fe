"""Which episodes an evaluation runs: suites, tasks, init states, and the diagnostic variants of each.

The environment module (``torchtitan_vla.envs.libero.env``, or a test's fake with the same functions)
names the suites and tasks; every name and index is checked here, before any simulator starts.

Diagnostics (``--diagnostics``) add, per task and init state, episodes that show whether a policy reads
the instruction and the scene: the instruction blanked, another task's instruction (the next task of the
suite), and the same task in each perturbed LIBERO-PRO suite of the suite (``<suite>_swap``: object
positions swapped, ``<suite>_lan``: the instruction reworded; whichever the environment lists).
"""

from __future__ import annotations

import zlib
from types import ModuleType

from torchtitan_vla.envs.libero.env import parse_indices

from .episode import EpisodeSpec

STANDARD = "standard"
BLANK = "blank_instruction"
OTHER = "other_instruction"
ALL_SUITES = "all"
DIAGNOSTICS = ("blank", "other", "perturbed")


def resolve_suites(text: str, env_module: ModuleType) -> list[str]:
    """``all`` (the standard suites) or comma-separated names; an unknown one names it and the valid ones."""
    standard = env_module.suite_names()
    if text == ALL_SUITES:
        return list(standard)
    suites = [name.strip() for name in text.split(",")]
    for name in suites:
        if name not in standard:
            raise ValueError(f"unknown LIBERO suite {name!r}; valid: {', '.join(standard)} or {ALL_SUITES}")
    return suites


def resolve_tasks(text: str, suite: str, env_module: ModuleType) -> list[int]:
    count = env_module.task_count(suite)
    if text == "all":
        return list(range(count))
    tasks = parse_indices(text, "--tasks")
    bad = [t for t in tasks if t >= count]
    if bad:
        raise ValueError(f"task id {bad[0]} is not in {suite} ({count} tasks: 0-{count - 1})")
    return tasks


def perturbed_suites(suite: str, env_module: ModuleType) -> list[str]:
    """The perturbed LIBERO-PRO suites of a standard suite, by name (``libero_object`` -> ``libero_object_swap``...)."""
    standard = set(env_module.suite_names())
    return [name for name in env_module.suite_names(include_perturbed=True)
            if name not in standard and name.startswith(suite + "_")]


def episode_seed(seed: int, key: tuple) -> int:
    """A seed of its own per episode, the same however the episodes are spread over workers."""
    return zlib.crc32(repr((seed, key)).encode())


def plan_episodes(env_module: ModuleType, suites: list[str], tasks: str, init_states: list[int], seed: int,
                  max_steps: dict[str, int], diagnostics: tuple[str, ...] = (), video_episodes: int = 0,
                  video_init_states: tuple[int, ...] = ()) -> list[EpisodeSpec]:
    """Every episode, grouped by suite and task (a worker keeps one environment per task). ``max_steps``:
    per standard suite (its perturbed suites share it); ``diagnostics``: any of ``DIAGNOSTICS``."""
    unknown = sorted(set(diagnostics) - set(DIAGNOSTICS))
    if unknown:
        raise ValueError(f"unknown diagnostic {unknown[0]!r}; valid: {', '.join(DIAGNOSTICS)}")
    specs = []
    for suite in suites:
        count = env_module.task_count(suite)
        for task_id in resolve_tasks(tasks, suite, env_module):
            language = env_module.task_language(suite, task_id)
            variants = [(suite, STANDARD, language)]
            if "blank" in diagnostics:
                variants.append((suite, BLANK, ""))
            if "other" in diagnostics:
                variants.append((suite, OTHER, env_module.task_language(suite, (task_id + 1) % count)))
            if "perturbed" in diagnostics:
                variants += [(name, name, env_module.task_language(name, task_id))
                             for name in perturbed_suites(suite, env_module)]
            for env_suite, variant, prompt in variants:
                for position, init_state in enumerate(init_states):
                    video = variant == STANDARD and (position < video_episodes or init_state in video_init_states)
                    key = (env_suite, task_id, init_state, variant)
                    specs.append(EpisodeSpec(env_suite, task_id, init_state, variant, suite, prompt,
                                             episode_seed(seed, key), max_steps[suite], video))
    return specs
