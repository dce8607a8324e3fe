"""One evaluation from its options: plan, check the policy, resume the log, run the workers, write results.

Order matters for bad input: suites, tasks and init states are checked, then the policy's widths, then the
results folder's settings, all before any simulator starts. Whatever stops a run, the episodes it finished
stay in ``episodes.jsonl`` and ``results.json`` / ``results.md`` are written from them (``complete`` says
whether every planned episode is in).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchtitan_vla.envs.libero.env import parse_indices
from torchtitan_vla.eval.delay import DelaySchedule

from .episode import EpisodeSettings
from .plan import plan_episodes, resolve_suites
from .provenance import versions
from .report import ProvenanceError, render_markdown
from .results import RESULTS_FILE, ResultsLog, record_key, summarize, write_json
from .runner import BatchPolicy, run_episodes
from .worker import LocalPolicy, WorkerConfig

ENV_MODULE = "torchtitan_vla.envs.libero.env"
DEFAULT_SEED = 7  # openpi's LIBERO example seeds the environment with 7


@dataclass
class Options:
    suite: str = "libero_object"
    tasks: str = "all"
    init_states: str = "0-49"
    """The standard init states to run (``0-49``: all 50, openpi's protocol; a held-out range such as 40-49)."""
    workers: int = 1
    batch_wait_ms: float = 20.0
    """How long a policy request waits for other workers' requests to join its batch (ends early once
    every worker is waiting)."""
    replan_steps: int = 5
    max_steps: int | None = None
    """Override of the suites' max steps (quick runs); None: 220/280/300/520 as published."""
    image_size: int = 256
    seed: int = DEFAULT_SEED
    diagnostics: tuple[str, ...] = ()
    video_episodes: int = 0
    video_init_states: tuple[int, ...] = ()
    execution: str = "sync"
    delay: int = 0
    max_delay: int | None = None
    render_every_step: bool = False
    output: str | None = None
    env_module: str = ENV_MODULE
    progress: bool = True


@dataclass
class PolicySource:
    """What ``open_policy()`` of an evaluation returns: the policy and its provenance."""

    provenance: dict[str, Any]
    """``policy`` (what runs), ``checkpoint_hash`` (the content hash of what produced the actions)."""
    batch_policy: BatchPolicy | None = None
    """A policy in the main process, or None when ``local_policy`` runs in the workers."""
    local_policy: LocalPolicy | None = None
    privileged_key: str | None = None
    """The key the scripted controller reads the simulator's poses from (nothing else gets them)."""
    packages: tuple[str, ...] = field(default_factory=tuple)
    """Packages whose versions the result records besides the simulator's (torch for a model)."""
    reads_images: bool = True
    """False: the policy ignores images (scripted, random), so nothing is rendered for it."""


class EvaluationStopped(RuntimeError):
    """A run that stopped before its end; the message says why and where the finished episodes are."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _progress(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="episode", dynamic_ncols=True, disable=not enabled,
                desc="LIBERO", file=sys.stderr)


def run(options: Options, open_policy: Callable[[], PolicySource]) -> dict[str, Any]:
    """Run the evaluation ``options`` describe with the policy ``open_policy()`` returns (called once the
    episodes are checked); -> the results document (also written to the output folder)."""
    env_module = importlib.import_module(options.env_module)
    suites = resolve_suites(options.suite, env_module)
    init_states = parse_indices(options.init_states, "--init-states")
    max_steps = {s: options.max_steps or env_module.SUITE_MAX_STEPS[s] for s in suites}
    specs = plan_episodes(env_module, suites, options.tasks, init_states, options.seed, max_steps,
                          options.diagnostics, options.video_episodes, options.video_init_states)
    DelaySchedule(options.execution, options.delay, options.max_delay).draw(options.replan_steps)  # named now
    source = open_policy()
    settings = EpisodeSettings(env_module.NUM_WAIT_STEPS, options.replan_steps, options.execution, options.delay,
                               options.max_delay, options.render_every_step, source.privileged_key,
                               source.reads_images)
    provenance = {
        **source.provenance,
        "suites": suites, "tasks": options.tasks, "trials_per_task": len(init_states), "init_states": init_states,
        "seeds": {"env": options.seed, "episode": options.seed}, "max_steps": max_steps,
        "num_wait_steps": settings.num_wait_steps, "replan_steps": options.replan_steps,
        "image_size": options.image_size, "diagnostics": list(options.diagnostics),
        "delay": {"execution": options.execution, "delay": options.delay, "max_delay": options.max_delay},
        "render": "every_step" if options.render_every_step else "replan_steps" if source.reads_images else "none",
        "workers": options.workers, "versions": versions(env_module, source.packages),
    }
    folder = Path(options.output or default_output(options, provenance))
    log = ResultsLog(folder, provenance)
    done = log.done_keys()
    todo = [spec for spec in specs if spec.key not in done]
    config = WorkerConfig(options.env_module, options.image_size, options.seed, settings, str(folder / "videos"),
                          source.local_policy)
    bar = _progress(len(specs), len(specs) - len(todo), options.progress)

    def on_done(record: dict[str, Any]) -> None:
        log.append(record)
        bar.update(1)
        finished = [r for r in log.records if r["variant"] == "standard"]
        if finished:
            bar.set_postfix(success=f"{sum(r['success'] for r in finished) / len(finished):.2f}")

    try:
        run_episodes(todo, config, options.workers, source.batch_policy, on_done, options.batch_wait_ms / 1000)
    except (Exception, KeyboardInterrupt) as err:  # one line: what stopped it, and that nothing finished is lost
        code = 130 if isinstance(err, KeyboardInterrupt) else 2 if getattr(err, "bad_input", False) else 1
        reason = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
        raise EvaluationStopped(f"{reason}; the {len(log.records)} finished episodes are kept in {log.path}", code) from err
    finally:
        bar.close()
        planned = {spec.key for spec in specs}
        document = summarize([r for r in log.records if record_key(r) in planned], provenance)
        document["complete"] = len(document["episodes"]) == len(specs)
        document["planned_episodes"] = len(specs)
        write_json(folder / RESULTS_FILE, document)
        try:
            (folder / "results.md").write_text(render_markdown(document, str(folder / RESULTS_FILE)))
        except ProvenanceError as err:  # e.g. a server that does not report its checkpoint's hash
            print(f"warning: {err}", file=sys.stderr)
    return document


def default_output(options: Options, provenance: dict[str, Any]) -> str:
    """``outputs/libero_eval/<policy>-<hash>-<suite>``: a rerun with the same arguments finds its log."""
    digest = str(provenance.get("checkpoint_hash") or "nohash").removeprefix("sha256:")[:12]
    kind = str(provenance.get("policy", {}).get("kind", "policy"))
    return str(Path("outputs") / "libero_eval" / f"{kind}-{digest}-{options.suite.replace(',', '+')}")
