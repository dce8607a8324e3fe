"""The Markdown table comes from results.json alone, and a result without its provenance is refused."""

import json

import pytest

from tests.eval.libero.helpers import GoalSeeker, run_fake
from torchtitan_vla.eval.libero.__main__ import main
from torchtitan_vla.eval.libero.provenance import REQUIRED
from torchtitan_vla.eval.libero.report import ProvenanceError, render_markdown


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("libero")
    run_fake(folder, GoalSeeker(), tasks="0,1", diagnostics=("blank",))
    return folder / "results.json"


def test_report_command_renders_the_file_alone(results, tmp_path, capsys):
    moved = tmp_path / "elsewhere.json"
    moved.write_text(results.read_text())  # no episode log, no environment: the file is enough
    assert main(["report", str(moved), "--out", str(tmp_path / "table.md")]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "table.md").read_text()
    assert "| suite | tasks | episodes | standard (%) | blank_instruction (%) |" in text
    assert "| fake_object | 2 | 16 | 100.0 | 0.0 |" in text
    assert "| 1 | move to target 1 | 4 | 100.0 | 0.0 |" in text
    assert '- checkpoint_hash: `"sha256:test"`' in text and "- init_states: `[0, 1, 2, 3]`" in text


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_provenance_field_is_refused(results, field):
    document = json.loads(results.read_text())
    del document["provenance"][field]
    with pytest.raises(ProvenanceError, match=f"^results.json: provenance lacks '{field}'; refusing to render it$"):
        render_markdown(document)


def test_report_command_refuses_in_one_line(results, tmp_path, capsys):
    document = json.loads(results.read_text())
    document["provenance"]["checkpoint_hash"] = None  # e.g. a server that does not report it
    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path}: provenance lacks 'checkpoint_hash'; refusing to render it\n"
