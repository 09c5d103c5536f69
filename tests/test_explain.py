"""A look inside: `poolbench explain` (token and layer weights) and `poolbench inspect` (native heads)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import data_overrides
from transformers import BertConfig, BertModel, GPT2Config, RobertaConfig, RobertaModel

from poolbench.analysis.inspect import inspect_model
from poolbench.cli import main as cli

TEXT = "the film was not bad at all"


def weight_lines(out: str) -> list[tuple[str, float]]:
    """(token, weight) rows of `poolbench explain`'s table."""
    lines = out.split("token ", 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if line.startswith("(sum)") or not line.strip():
            break
        token, weight = line.split()[:2]
        rows.append((token, float(weight)))
    return rows


@pytest.mark.parametrize("pooling", ["attention", "mha", "self_attentive"])
def test_explain_prints_one_weight_per_token_and_writes_a_png(run_job, csv_data, tmp_path, capsys, pooling):
    results, run_dir = run_job([*data_overrides(csv_data), f"pooling={pooling}"])
    assert results["status"] == "finished"
    capsys.readouterr()  # the job's own output
    recorded = json.loads((run_dir / "explanations.json").read_text())  # written at test time, a few examples
    assert recorded["explanations"] and all(abs(sum(e["weights"]) - 1) < 1e-5 for e in recorded["explanations"])
    png = tmp_path / "weights.png"
    assert cli(["explain", str(run_dir), TEXT, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    rows = weight_lines(out)
    from poolbench.model.encoder import load_tokenizer, packaged_minilm_path

    tokens = load_tokenizer(packaged_minilm_path()).tokenize(TEXT)
    assert [t for t, _ in rows] == ["[CLS]", *tokens, "[SEP]"]
    assert sum(w for _, w in rows) == pytest.approx(1.0, abs=1e-3)  # printed with 4 decimals
    assert png.stat().st_size > 1000
    if pooling != "attention":
        assert "per head/hop: 4" in out


def test_explain_shows_scalar_mix_layer_weights(run_job, csv_data, tmp_path, capsys):
    _, run_dir = run_job([*data_overrides(csv_data), "pooling=mean", "layers=scalar_mix"])
    capsys.readouterr()  # the job's own output
    assert cli(["explain", str(run_dir), TEXT, "--png", str(tmp_path / "x.png"), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["explanations"] == []  # mean pooling has no token weights
    weights = found["layer_weights"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0)  # embeddings + the tiny encoder's 2 layers
    assert weights != pytest.approx([1 / 3] * 3)  # learned: moved away from the uniform start
    assert (tmp_path / "x-layers.png").stat().st_size > 1000


def test_explain_says_when_there_is_nothing_to_show(run_job, csv_data, tmp_path, capsys):
    _, run_dir = run_job([*data_overrides(csv_data), "pooling=cls"])
    assert cli(["explain", str(run_dir), TEXT]) == 2
    assert "pooling=cls has no learned weights to show" in capsys.readouterr().err
    assert cli(["explain", str(tmp_path / "nowhere"), TEXT]) == 2
    assert "no such run folder or checkpoint" in capsys.readouterr().err


SMALL = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=100)


def test_inspect_names_the_pooling_of_each_native_head(tmp_path, capsys):
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**SMALL))
    bert.save_pretrained(tmp_path / "bert")  # fresh pooler: bias all zero
    with torch.no_grad():
        bert.pooler.dense.bias.normal_()
    bert.save_pretrained(tmp_path / "bert-trained")
    RobertaModel(RobertaConfig(**SMALL)).save_pretrained(tmp_path / "roberta")
    GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=100).save_pretrained(tmp_path / "gpt2")  # config only

    fresh, trained = inspect_model(str(tmp_path / "bert")), inspect_model(str(tmp_path / "bert-trained"))
    assert fresh.head.pooling == trained.head.pooling == "pooler" and fresh.head.exact
    assert "UNTRAINED" in fresh.verdict and "pooler.dense.bias" in fresh.verdict
    assert trained.verdict.startswith("looks trained")
    roberta = inspect_model(str(tmp_path / "roberta"))
    assert roberta.head.pooling == "roberta_head" and "<s>" in roberta.head.reads
    gpt2 = inspect_model(str(tmp_path / "gpt2"))
    assert gpt2.head.pooling == "last_token" and "no weights on disk" in gpt2.verdict

    assert cli(["inspect", str(tmp_path / "gpt2")]) == 0
    assert "poolbench: pooling=last_token" in capsys.readouterr().out
    assert cli(["inspect", str(tmp_path / "nothing")]) == 2
    assert "cannot read a config" in capsys.readouterr().err


def test_inspect_flags_the_packaged_minilm_pooler_as_untrained():
    from poolbench.model.encoder import packaged_minilm_path

    report = inspect_model(packaged_minilm_path())
    assert report.head.pooling == "pooler" and "UNTRAINED" in report.verdict
