"""Frozen-encoder sweeps: cached token states give the same features and the same head as the encoder does."""

from __future__ import annotations

import pytest
import torch
from conftest import data_overrides

from poolbench.model import features
from poolbench.record import read_predictions


def predictions(out):
    return {r["idx"]: r["probs"] for r in read_predictions(out)}


def test_cached_states_equal_the_encoder_output(compose, csv_data, cache_dir):
    from hydra.utils import instantiate

    cfg = compose(["data=csv", f"data.train={csv_data['train']}"])
    tokenizer = instantiate(cfg.encoder.tokenizer)
    dm = instantiate(cfg.data, tokenizer=tokenizer)
    dm.setup()
    torch.manual_seed(0)
    encoder = instantiate(cfg.encoder.model).eval()
    states = features.cached_token_states(encoder, dm, cache_dir)
    ds = dm.splits["val"]
    for i in (0, 3, len(ds) - 1):
        ids = torch.tensor([ds[i]["input_ids"]])
        with torch.no_grad():
            expected = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        item = states["val"][i]
        assert item["labels"] == ds[i]["labels"] and item["idx"] == i
        torch.testing.assert_close(item["hidden_states"], expected, rtol=1e-5, atol=1e-5)


def test_frozen_sweep_with_cache_trains_the_same_head_and_skips_the_encoder(run_job, csv_data, monkeypatch):
    data = data_overrides(csv_data)
    common = [*data, "encoder.freeze=true", "pooling=attention", "seed=7", "trainer.max_epochs=2"]
    cached, out_cached = run_job([*common, "encoder.cache_features=true"])
    cached_preds = predictions(out_cached)
    plain, out_plain = run_job([*common, "encoder.cache_features=false"])
    for key in ("val/f1_macro", "test/acc", "test/f1_macro", "train/loss"):
        assert plain["metrics"][key] == pytest.approx(cached["metrics"][key], abs=1e-5), key
    plain_preds = predictions(out_plain)
    for i, probs in plain_preds.items():
        assert probs == pytest.approx(cached_preds[i], abs=1e-5)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although its token states are cached")

    monkeypatch.setattr(features, "compute_token_states", no_encoder)
    # another pooling over the same encoder weights (the tiny random encoder's weights depend on the seed)
    again, _ = run_job([*common, "encoder.cache_features=true", "pooling=max"])
    assert again["status"] == "finished"
