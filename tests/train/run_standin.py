"""``train.py`` with the stand-in model and data: ``[torchrun ...] run_standin.py --config X.toml [--k=v ...]``."""

import sys

from tests.train.standin import standin_spec
from torchtitan_vla.config import ConfigError, load_config, parse_command_line, resolve_stages
from torchtitan_vla.train.main import run


def main(argv: list[str]) -> int:
    try:
        cli = parse_command_line(argv)
        loaded = load_config(cli.config_path, cli.overrides)
        stages = resolve_stages(loaded)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run(loaded, stages, spec=standin_spec())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
