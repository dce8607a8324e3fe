"""Entry point: ``torchrun --nproc_per_node=N train.py --config FILE.toml [--section.key=value ...]``.

``python train.py --config FILE.toml`` runs one process without torchrun. ``--print-config`` prints
what every curriculum stage runs with (one TOML document) and exits. A configuration problem, in the
file or on the command line, in any stage, is one ``error: ...`` line on stderr and exit code 2, before
anything is built.
"""

from __future__ import annotations

import sys

from torchtitan_vla.config import ConfigError, load_stages, parse_command_line


def main(argv: list[str]) -> int:
    try:
        cli = parse_command_line(argv)
        if cli.config_path is None:
            raise ConfigError("command line: --config FILE.toml is required")
        loaded, stages = load_stages(cli.config_path, cli.overrides)
        if cli.print_config:
            from torchtitan_vla.config.printing import render_stages

            print(f"# configuration from {loaded.source}; {len(stages)} stage(s)")
            print(render_stages(stages))
            return 0
        from torchtitan_vla.train.main import run

        return run(loaded, stages)
    except ConfigError as e:
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
