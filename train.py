"""Entry point: ``torchrun --nproc_per_node=N train.py --config FILE.toml [--section.key=value ...]``.

``python train.py --config FILE.toml`` runs one process without torchrun. ``--print-config`` prints
the resolved configuration (every curriculum stage resolved) and exits.
"""

from __future__ import annotations

import sys

from torchtitan_vla.config import ConfigError, load_config, parse_command_line, resolve_stages


def main(argv: list[str]) -> int:
    try:
        cli = parse_command_line(argv)
        if cli.config_path is None:
            raise ConfigError("command line: --config FILE.toml is required")
        loaded = load_config(cli.config_path, cli.overrides)
        stages = resolve_stages(loaded)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cli.print_config:
        from torchtitan_vla.config.printing import render_stages

        print(f"# configuration from {loaded.source}; {len(stages)} stage(s)")
        print(render_stages(stages))
        return 0
    from torchtitan_vla.train.main import run

    return run(loaded, stages)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
