"""The command line keeps its subcommands; generate and replay are the environment package's own."""

import pytest

from torchtitan_vla.eval.libero.__main__ import main


def test_subcommands_are_listed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("evaluate", "scripted", "generate", "replay", "report"))


@pytest.mark.parametrize("command, flag", [("generate", "--layout"), ("replay", "--replay")])
def test_generate_and_replay_delegate_to_the_environment_package(capsys, command, flag):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m torchtitan_vla.envs.libero.generate" in out and flag in out


def test_nonpositive_counts_are_named(capsys):
    assert main(["evaluate", "--random-actions", "--workers", "0"]) == 2
    assert capsys.readouterr().err == "error: --workers must be at least 1, got 0\n"
