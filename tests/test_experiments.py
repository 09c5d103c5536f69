"""The committed studies rebuild: every table.md under experiments/ comes out of its committed records, the same
to the last digit, whatever version of poolbench wrote the records."""

from __future__ import annotations

import os

import pytest
from conftest import ROOT

from poolbench.cli import main as cli

FT, FZ = "experiments/pooling_ablation", "experiments/frozen_vs_finetuned"
PROBES = [f"{FZ}/frozen_probe/runs", f"{FZ}/frozen_probe_new/runs"]
FINE_TUNED = [f"{FT}/runs", f"{FT}/runs_scalar_mix", f"{FT}/runs_new"]
SIDE_BY_SIDE = ["--by", "encoder.freeze,pooling", "--ref", "encoder.freeze=False,pooling=cls"]
LAYERS = ["--by", "layers,pooling", "--ref", "layers=last,pooling=cls"]
# the table a study's README shows -> the command (as in that README) that makes it from the committed records
TABLES = {
    f"{FT}/table.md": [f"{FT}/runs", "--by", "pooling", "--ref", "pooling=cls"],
    f"{FT}/layers/table.md": [*FINE_TUNED[:2], *LAYERS],
    f"{FT}/all/table.md": [*FINE_TUNED, *LAYERS],
    f"{FZ}/frozen_probe/table.md": [PROBES[0], "--by", "pooling", "--ref", "pooling=cls"],
    f"{FZ}/frozen_probe_all/table.md": [*PROBES, "--by", "pooling", "--ref", "pooling=cls"],
    f"{FZ}/table.md": [PROBES[0], f"{FT}/runs", *SIDE_BY_SIDE],
    f"{FZ}/all/table.md": [*PROBES, f"{FT}/runs", f"{FT}/runs_new", *SIDE_BY_SIDE],
    f"{FT}/scalar_mix_head_lr/table.md": [
        f"{FT}/runs",
        f"{FT}/runs_scalar_mix",
        f"{FT}/runs_scalar_mix_head_lr",
        "--by",
        "layers,model.head_lr,pooling",
        "--ref",
        "layers=last,model.head_lr=None,pooling=cls",
    ],
    "experiments/domain_probes/table.md": ["experiments/domain_probes/runs", "--by", "pooling", "--ref", "pooling=cls"],
    "experiments/domain_finetuned/table.md": [
        "experiments/domain_finetuned/runs",
        "--by",
        "pooling",
        "--ref",
        "pooling=cls",
    ],  # fmt: skip
}


def test_every_committed_table_is_covered():
    committed = {str(p.relative_to(ROOT)) for p in (ROOT / "experiments").rglob("table.md")}
    assert committed == set(TABLES)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_committed_table_rebuilds_from_its_records(table, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the READMEs' commands run from the repository root; notes name runs by those paths
    assert cli(["table", *TABLES[table], "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    assert (tmp_path / "table.md").read_text() == (ROOT / table).read_text()
    assert all(os.path.getsize(p) > 1000 for p in tmp_path.glob("metrics*.png")) and list(tmp_path.glob("metrics*.png"))


def test_examples_only_intervals_are_the_ones_first_published(tmp_path, monkeypatch):
    """`--ci examples` gives the intervals of the first version of the study (quoted in its README)."""
    monkeypatch.chdir(ROOT)
    readme = (ROOT / FT / "README.md").read_text()
    published = [line for line in readme.split("The first version of [table.md]")[1].splitlines()
                 if line.startswith("| ") and "seeds" not in line][:5]  # fmt: skip
    assert cli(["table", f"{FT}/runs", "--by", "pooling", "--ref", "pooling=cls", "--ci", "examples",
                "--out", str(tmp_path)]) == 0  # fmt: skip
    rows = [line.split(" | ") for line in (tmp_path / "table.md").read_text().splitlines()[2:7]]
    without_verdicts = [" | ".join(cells[:5] + cells[6:9]) + " |" for cells in rows]  # drop the verdict columns
    assert without_verdicts == [line.rstrip() for line in published] and len(published) == 5
