"""A strict data error stops the run with one ``error:`` line naming the culprit and exit code 4, also when
it was raised inside a data-loader worker process (where torch wraps it with the worker's traceback)."""

from __future__ import annotations

import dataclasses

import pytest
from torch.utils.data import IterableDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from tests.train.helpers import CONFIG
from tests.train.standin import standin_spec
from torchtitan_vla.config import load_config, parse_command_line, resolve_stages
from torchtitan_vla.data.web import CorruptShardError
from torchtitan_vla.train.main import EXIT_BAD_DATA, run

CULPRIT = "cc12m shard /data/cc12m-train-0003.tar: truncated (ends inside member 000123.jpg)"


class _Truncated(IterableDataset):
    def __iter__(self):
        raise CorruptShardError(CULPRIT)


def _failing_loader(workers: int):
    def build(cfg, tokenizer, dp_rank, dp_world_size, split):
        loader = StatefulDataLoader(_Truncated(), batch_size=2, num_workers=workers)
        loader.source_names, loader.skipped_per_source = ["web"], {"web": 0}
        return loader
    return build


@pytest.mark.parametrize("workers", [0, 1])
def test_strict_data_error_is_one_line_and_exit_4(tmp_path, capsys, workers):
    cli = parse_command_line(["--config", str(CONFIG), f"--job.dump_folder={tmp_path}", "--curriculum.only_stage=vlm"])
    loaded = load_config(cli.config_path, cli.overrides)
    spec = dataclasses.replace(standin_spec(), build_dataloader=_failing_loader(workers))
    assert run(loaded, resolve_stages(loaded), spec=spec) == EXIT_BAD_DATA
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {CULPRIT}"]
