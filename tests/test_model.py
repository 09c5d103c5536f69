"""The LightningModule: training really trains (dropout on), freezing really freezes, the optimizer groups."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_bert
from torch.utils.data import DataLoader

from poolbench.model.classifier import PoolingClassifier
from poolbench.model.encoder import from_pretrained, load_tokenizer, packaged_minilm_path
from poolbench.model.poolers import MeanPooling


class Probe(pl.Callback):
    """Records, at every training step, whether each dropout layer of the model is active."""

    def __init__(self):
        self.dropout_modes: list[bool] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        modes = [m.training for m in module.modules() if isinstance(m, torch.nn.Dropout)]
        assert modes, "the model has no dropout layers"
        self.dropout_modes.extend(modes)


def batches(tokenizer, n: int = 4):
    texts = ["a wonderful film", "awful, just awful", "it was fine I guess", "the worst service ever"] * 2
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    items = [
        {
            "input_ids": enc["input_ids"][i],
            "attention_mask": enc["attention_mask"][i],
            "labels": torch.tensor(i % 4),
        }
        for i in range(len(texts))
    ]
    return DataLoader(items, batch_size=n)


def fit(model, loader, callbacks=(), steps: int = 3):
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=loader)
    return trainer


@pytest.mark.slow
def test_packaged_encoder_loads_offline_and_trains_with_dropout_active():
    path = packaged_minilm_path()
    encoder = from_pretrained(path)
    assert not encoder.training  # from_pretrained returns eval mode: the module must switch it back
    model = PoolingClassifier(encoder, MeanPooling, num_labels=4)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    probe = Probe()
    fit(model, batches(load_tokenizer(path)), [probe])
    assert probe.dropout_modes and all(probe.dropout_modes)
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2  # the encoder is fine-tuned, not only the head


def test_training_forward_is_stochastic_and_eval_is_not():
    torch.manual_seed(0)
    model = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4)
    ids, mask = torch.randint(5, 1000, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    assert not torch.equal(model(ids, mask), model(ids, mask))  # dropout active after construction
    model.eval()
    assert torch.equal(model(ids, mask), model(ids, mask))


def test_freeze_is_a_linear_probe():
    path = packaged_minilm_path()
    torch.manual_seed(0)
    model = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, freeze=True)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.classifier.weight.clone()
    probe = Probe()
    fit(model, batches(load_tokenizer(path)), [probe])
    assert not model.encoder.training and model.training  # encoder stays in eval mode, head trains
    assert all(torch.equal(v, before[k]) for k, v in model.encoder.state_dict().items())
    assert not torch.equal(model.classifier.weight, head_before)
    assert all(not p.requires_grad for p in model.encoder.parameters())


def test_no_weight_decay_on_biases_and_layernorm():
    model = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, weight_decay=0.1)
    trainer = pl.Trainer(max_steps=10, logger=False, accelerator="cpu")
    model.trainer = trainer
    opt = model.configure_optimizers()["optimizer"]
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    not_decayed = [p for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(not n.endswith("bias") and "LayerNorm" not in n for i, n in names.items() if i in decayed)
    assert any("LayerNorm.weight" in names[id(p)] for p in not_decayed)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))  # each once


def test_head_lr_applies_to_layer_mix_pooler_and_classifier_only():
    from poolbench.model.attention import AttentionPooling
    from poolbench.model.layers import ScalarMix

    model = PoolingClassifier(tiny_bert(), AttentionPooling, num_labels=4, layers=ScalarMix, lr=5e-5, head_lr=1e-3)
    model.trainer = pl.Trainer(max_steps=10, logger=False, accelerator="cpu")
    opt = model.configure_optimizers()["optimizer"]
    lr_of = {id(p): g["initial_lr"] for g in opt.param_groups for p in g["params"]}  # peak lr (warm-up starts at 0)
    for name, p in model.named_parameters():
        assert lr_of[id(p)] == (5e-5 if name.startswith("encoder.") else 1e-3), name
    assert lr_of[id(model.layers.scores)] == 1e-3 and lr_of[id(model.pooling.query)] == 1e-3


def test_a_linear_probe_trains_at_head_lr_and_says_that_model_lr_is_unused(caplog):
    """Frozen, only the parts outside the encoder train: at model.head_lr; a model.lr that differs is named unused."""
    with caplog.at_level("WARNING"):
        model = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, freeze=True, lr=1e-2, head_lr=1e-3)
    assert "model.lr (0.01) is unused" in caplog.text and "model.head_lr (0.001)" in caplog.text
    model.trainer = pl.Trainer(max_steps=10, logger=False, accelerator="cpu")
    opt = model.configure_optimizers()["optimizer"]
    assert {g["initial_lr"] for g in opt.param_groups for p in g["params"] if p.requires_grad} == {1e-3}
    caplog.clear()
    PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, freeze=True, lr=1e-3, head_lr=1e-3)
    PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, freeze=True, head_lr=1e-3)  # model.lr left alone
    assert "unused" not in caplog.text


def test_checkpoint_pooler_is_detached_unless_pooling_pooler_uses_it():
    from poolbench.model.poolers import DenseTanhPooling

    model = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4)
    assert model.encoder.pooler is None  # not computed, and no parameters left without gradients
    assert not any(n.startswith("encoder.pooler") for n, _ in model.named_parameters())
    encoder = tiny_bert()
    weight = encoder.pooler.dense.weight.clone()
    model = PoolingClassifier(encoder, DenseTanhPooling, num_labels=4)
    assert torch.equal(model.pooling.dense.weight, weight)


def test_frozen_checkpoints_hold_the_head_only_and_load_back(tmp_path):
    torch.manual_seed(0)
    model = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, freeze=True)
    trainer = fit(model, batches(load_tokenizer(packaged_minilm_path())), steps=2)
    path = tmp_path / "head.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert saved and not any(k.startswith("encoder.") for k in saved)
    torch.manual_seed(0)
    again = PoolingClassifier(tiny_bert(), MeanPooling, num_labels=4, freeze=True)
    again.load_state_dict(saved, strict=again.strict_loading)
    assert torch.equal(again.classifier.weight, model.classifier.weight)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fused_and_plain_adamw_train_the_same_weights(precision):
    """The fused AdamW kernel (the default) updates like the plain loop, gradient clipping included."""
    tokenizer = load_tokenizer(packaged_minilm_path())
    weights = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = PoolingClassifier(
            tiny_bert(), MeanPooling, num_labels=4, warmup_ratio=0.0, lr=1e-3, fused_optimizer=fused
        )
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        trainer = pl.Trainer(
            max_steps=6,
            accelerator="cpu",
            precision=precision,
            gradient_clip_val=0.5,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        torch.manual_seed(1)
        trainer.fit(model, train_dataloaders=batches(tokenizer, n=2))
        assert trainer.optimizers[0].defaults["fused"] is (True if fused else None)
        weights[fused] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    moved = [k for k, v in weights[True].items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert len(moved) > 10  # training changed the weights (both runs start from the same, seeded weights)
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if precision == "32-true" else {"rtol": 1e-3, "atol": 1e-4}
    for name, value in weights[True].items():
        torch.testing.assert_close(value, weights[False][name], **tolerance, msg=name)
