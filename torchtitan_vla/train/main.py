"""``run(loaded, stages) -> exit code``: what ``train.py`` calls after parsing the configuration.

Exit codes: 0 done or preempted (state saved, requeue the job), 1 stopped by the non-finite guard,
2 a configuration or path problem, or the run folder is in use by another job (one ``error:`` line on
stderr), 4 bad training data under ``data.strict`` (one ``error:`` line naming the file, episode, frame or
row, also when a data-loader worker raised it), 3 no space left on a device (one ``error:`` line naming the folder; a checkpoint being saved is
removed, the previous ones are intact), 130 a second Ctrl-C (abort without saving).
"""

from __future__ import annotations

import sys

from torchtitan_vla.config import ConfigError, LoadedConfig, ResolvedStage
from torchtitan_vla.data.errors import DataError, one_line
from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.logging import init_logging, logger

from .disk import DiskFullError, is_disk_full
from .run_lock import RunFolderLocked
from .spec import TrainSpec, default_spec
from .trainer import NonFiniteLossError, Preempted, Trainer

EXIT_DISK_FULL = 3
EXIT_BAD_DATA = 4
EXIT_ABORTED = 130


def run(loaded: LoadedConfig, stages: list[ResolvedStage], spec: TrainSpec | None = None) -> int:
    init_logging(loaded.config.job.log_all_ranks)
    trainer = None
    try:
        trainer = Trainer(loaded, stages, spec or default_spec())
        trainer.run()
        return 0
    except Preempted:
        return 0
    except NonFiniteLossError as e:
        logger.error(f"training stopped: {e}")
        return 1
    except (ConfigError, FileNotFoundError, RunFolderLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_DATA
    except KeyboardInterrupt:
        print("error: aborted by a second Ctrl-C; nothing saved since the last checkpoint", file=sys.stderr)
        return EXIT_ABORTED
    except Exception as e:
        if not is_disk_full(e):
            raise
        where = f" in {e.filename}" if isinstance(e, OSError) and e.filename else ""
        message = str(e) if isinstance(e, DiskFullError) else f"no space left on the device{where} ({e})"
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_DISK_FULL
    finally:
        if trainer is not None:
            trainer.close()
        dist_utils.destroy_distributed()
