"""The LIBERO command line (docs/libero_evaluation.md).

    python -m torchtitan_vla.eval.libero evaluate (--checkpoint EXPORT | --server HOST:PORT | --random-actions)
        [--suite libero_object|...|all] [--tasks all] [--init-states 0-49 | --episodes-per-task N] [--workers N]
        [--diagnostics [blank,other,perturbed]] [--video-episodes K] [--output DIR] ...
    python -m torchtitan_vla.eval.libero scripted [same episode options]   # the privileged scripted controller
    python -m torchtitan_vla.eval.libero generate ...                      # envs.libero.generate's command line
    python -m torchtitan_vla.eval.libero replay DATASET                    # replay check of generated demos
    python -m torchtitan_vla.eval.libero report RESULTS.json [--out FILE]  # the Markdown table of a result

Bad input (an unknown suite, task id or init state, a policy whose widths do not fit LIBERO, a results
folder written with other settings) is one ``error:`` line and exit code 2, found before any simulator
starts where it can be; a run stopped by a runtime failure (a simulator error, a server that went away) is
one line and exit code 1. Either way the finished episodes stay in the results folder, and a rerun with the
same arguments continues from them.
"""

from __future__ import annotations

import argparse
import sys

from torchtitan_vla.envs.libero.env import parse_indices
from torchtitan_vla.eval.delay import EXECUTIONS

from .evaluate import DEFAULT_SEED, EvaluationStopped, Options, PolicySource, run
from .plan import DIAGNOSTICS

SCRIPTED_HORIZON = 10


def _episode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="libero_object", help="a standard suite, a comma list, or 'all'")
    parser.add_argument("--tasks", default="all", help="task ids: all, N, A-B or a comma list")
    states = parser.add_mutually_exclusive_group()
    states.add_argument("--init-states", default=None,
                        help="standard init states to run, e.g. 0-49 (openpi's protocol) or 40-49 (held out)")
    states.add_argument("--episodes-per-task", type=int, default=None, help="the first N init states (default 50)")
    parser.add_argument("--workers", type=int, default=1, help="simulator processes (the policy batches their calls)")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0,
                        help="how long a policy request waits for other workers' requests to join its batch")
    parser.add_argument("--replan-steps", type=int, default=5, help="actions executed from each chunk")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="policy steps per episode (default: the suite's 220/280/300/520)")
    parser.add_argument("--image-size", type=int, default=256, help="camera side in pixels (the datasets' 256)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="environment and episode seed")
    parser.add_argument("--diagnostics", nargs="?", const=",".join(DIAGNOSTICS), default="",
                        help=f"extra columns per task, any of {','.join(DIAGNOSTICS)} (all when given alone)")
    parser.add_argument("--video-episodes", type=int, default=0, help="save an mp4 of the first K episodes per task")
    parser.add_argument("--video-init-states", default="", help="save an mp4 of the episodes of these init states")
    parser.add_argument("--render-every-step", action="store_true",
                        help="render both cameras every step (benchmarks; default: only when the policy is asked)")
    parser.add_argument("--output", default=None, help="results folder (default outputs/libero_eval/<policy>-<hash>-<suite>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--execution", choices=EXECUTIONS, default="sync", help="chunk execution (eval/delay.py)")
    parser.add_argument("--delay", type=int, default=0, help="simulated inference delay d in control steps")
    parser.add_argument("--max-delay", type=int, default=None, help="draw d uniformly from [--delay, --max-delay]")


def _options(args: argparse.Namespace) -> Options:
    for name in ("workers", "replan_steps", "image_size", "max_steps", "episodes_per_task"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    init_states = args.init_states or f"0-{(args.episodes_per_task or 50) - 1}"
    return Options(
        suite=args.suite, tasks=args.tasks, init_states=init_states, workers=args.workers,
        batch_wait_ms=args.batch_wait_ms,
        replan_steps=args.replan_steps, max_steps=args.max_steps, image_size=args.image_size, seed=args.seed,
        diagnostics=tuple(d for d in args.diagnostics.split(",") if d), video_episodes=args.video_episodes,
        video_init_states=tuple(parse_indices(args.video_init_states, "--video-init-states"))
        if args.video_init_states else (),
        execution=args.execution, delay=args.delay, max_delay=args.max_delay,
        render_every_step=args.render_every_step, output=args.output, progress=not args.no_progress,
    )


def _policy_opener(args: argparse.Namespace):
    """``open_policy()`` for ``run``: the policy of the command line, checked against LIBERO's widths."""
    from . import policies

    def open_policy() -> PolicySource:
        if args.command == "scripted":
            from torchtitan_vla.envs.libero import scripted

            from .provenance import source_hash

            return PolicySource({"policy": {"kind": "scripted"}, "checkpoint_hash": source_hash(scripted)},
                                local_policy=policies.ScriptedController(SCRIPTED_HORIZON),
                                privileged_key=scripted.PRIVILEGED_KEY, reads_images=False)
        if args.random_actions:
            return PolicySource({"policy": {"kind": "random_actions", "horizon": SCRIPTED_HORIZON},
                                 "checkpoint_hash": "none: uniform random actions"},
                                local_policy=policies.RandomActions(SCRIPTED_HORIZON), reads_images=False)
        if args.server:
            server = policies.ServerPolicy(args.server, args.workers, args.replan_steps, args.api_key)
            return PolicySource({"policy": {"kind": "server", "address": args.server, "metadata": server.metadata},
                                 "checkpoint_hash": server.metadata.get("content_hash")}, batch_policy=server)
        import torch

        from torchtitan_vla.utils.checksums import export_content_hash

        policy = policies.ExportPolicy(args.checkpoint, args.replan_steps, args.device)
        torch.manual_seed(args.seed)  # the flow-matching noise
        return PolicySource({"policy": {"kind": "export", "path": args.checkpoint, "device": args.device},
                             "checkpoint_hash": export_content_hash(args.checkpoint)},
                            batch_policy=policy, packages=("torch",))

    return open_policy


def _delegate(argv: list[str]) -> int | None:
    """``generate`` and ``replay`` are the environment package's command line."""
    if argv and argv[0] in ("generate", "replay"):
        from torchtitan_vla.envs.libero import generate

        rest = argv[1:]
        if argv[0] == "replay" and rest and not rest[0].startswith("-"):
            rest = ["--replay", *rest]  # replay DIR: generate's --replay DIR (--help: generate's help)
        return generate.main(rest)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = _delegate(argv)
    if delegated is not None:
        return delegated
    parser = argparse.ArgumentParser(prog="python -m torchtitan_vla.eval.libero", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="closed-loop success of a policy under openpi's LIBERO protocol")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="exported policy folder, run in this process")
    source.add_argument("--server", help="openpi-protocol policy server, host:port or ws://host:port")
    source.add_argument("--random-actions", action="store_true", help="the random-action baseline")
    ev.add_argument("--api-key", default=None, help="the server's API key")
    ev.add_argument("--device", default="cpu", help="device of an in-process policy")
    _episode_arguments(ev)
    _episode_arguments(sub.add_parser("scripted", help="the privileged scripted controller through the same harness"))
    sub.add_parser("generate", help="scripted demonstrations as a LeRobot dataset (envs.libero.generate)")
    sub.add_parser("replay", help="replay-check a generated dataset (envs.libero.generate --replay)")
    rep = sub.add_parser("report", help="the Markdown table of a results.json")
    rep.add_argument("results")
    rep.add_argument("--out", default=None, help="also write it here")
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            from .report import render_file

            text = render_file(args.results)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(text)
            print(text, end="")
            return 0
        document = run(_options(args), _policy_opener(args))
    except EvaluationStopped as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except (ValueError, FileNotFoundError) as err:  # bad input, found before any simulator started
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # e.g. no policy server at the address
        print(f"error: {err}", file=sys.stderr)
        return 1
    from .report import ProvenanceError, render_markdown

    try:
        print(render_markdown(document), end="")
    except ProvenanceError as err:  # the results are written; only the table is refused
        print(f"warning: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
