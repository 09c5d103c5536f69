"""The LightningModule: encoder -> pooler -> dropout -> linear classifier."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from poolbench.model.encoder import detach_pooler
from poolbench.model.layers import LastLayer
from poolbench.settings import Settings, raise_problems

log = logging.getLogger(__name__)

ENCODER_LR = 5e-5  # the default peak rate of the encoder (conf/model/classifier.yaml agrees: tested)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "hidden_states")


def gather_rows(rows: list[dict]) -> list[dict]:
    """Under DDP, every rank's rows (keyed by ``idx``), each once, in ``idx`` order; alone, ``rows`` as they are."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    shares: list = [None] * dist.get_world_size()
    dist.all_gather_object(shares, rows)
    unique = {row["idx"]: row for share in shares for row in share}
    return [unique[i] for i in sorted(unique)]


class PoolingClassifier(pl.LightningModule):
    """Sequence classification from a pluggable pooling of an encoder's token states.

    ``encoder -> layers (which hidden layers) -> pooling -> dropout -> linear classifier``.

    Args:
        encoder: a Hugging Face encoder (``BertModel``, ``RobertaModel``, ...). Its own pooler, if any, is
            detached; ``pooling=pooler`` starts from a copy of it.
        pooling: builds the pooler from ``hidden_size`` (a Hydra ``_partial_`` of a class in
            ``poolbench.model.poolers``).
        num_labels: number of classes.
        layers: builds the layer selector from ``hidden_size`` and ``num_layers`` (``poolbench.model.layers``);
            ``None``: the last layer.
        label_names: class names in id order, for per-class metrics.
        classifier_dropout: dropout between pooler and classifier; ``None`` takes the encoder's
            ``hidden_dropout_prob``, as ``BertForSequenceClassification`` does.
        freeze: linear probe: the encoder gets no gradients and stays in eval mode (no dropout).
        lr: peak learning rate of the encoder (AdamW).
        weight_decay: AdamW weight decay, not applied to biases and LayerNorm weights.
        warmup_ratio: fraction of the training steps with linear warm-up; linear decay to 0 after.
        head_lr: peak learning rate of the parameters outside the encoder (layer mix, pooler, classifier), which
            start fresh (or, like the attention query, at zero); ``None``: ``lr``. At the encoder's rate (5e-5 for
            ~1,000 steps) they barely move: the attention query stayed at mean pooling, ``layers=scalar_mix`` at the
            plain average of the layers. 3e-3 was chosen by ``experiments/head_lr_pilot`` (every learned part moves;
            smallest worst loss of validation macro-F1 over the rows). A linear probe trains only these.
        fused_optimizer: AdamW's fused kernel (one pass over all parameters) where the device supports it; the
            same updates as the plain loop up to float rounding (tested), faster (benchmarks/README.md).
        encoder_name: for log messages.
    """

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        """What is wrong with the training settings (``model.<key>: ...``)."""
        found = Settings(settings, "model")
        found.number("lr", lambda v: v > 0, "a positive number")
        found.number("head_lr", lambda v: v > 0, "a positive number", optional=True)
        found.number("weight_decay", lambda v: v >= 0, ">= 0")
        found.number("warmup_ratio", lambda v: 0 <= v <= 1, "in [0, 1]")
        found.number("classifier_dropout", lambda v: 0 <= v < 1, "in [0, 1)", optional=True)
        return found.problems

    def __init__(
        self,
        encoder: nn.Module,
        pooling: Callable[..., nn.Module],
        num_labels: int,
        layers: Callable[..., nn.Module] | None = None,
        label_names: list[str] | None = None,
        classifier_dropout: float | None = None,
        freeze: bool = False,
        lr: float = ENCODER_LR,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        head_lr: float | None = 3e-3,
        fused_optimizer: bool = True,
        encoder_name: str = "encoder",
    ) -> None:
        raise_problems(
            self.check(
                {
                    "lr": lr,
                    "head_lr": head_lr,
                    "weight_decay": weight_decay,
                    "warmup_ratio": warmup_ratio,
                    "classifier_dropout": classifier_dropout,
                }
            )
        )
        super().__init__()
        # the modules themselves are not hyper-parameters (and must not be pickled into checkpoints' hparams); the
        # loggers get the job's whole config instead, once and nested (model.lr, pooling.name, ...)
        self.save_hyperparameters(ignore=["encoder", "pooling", "layers"], logger=False)
        self.encoder = encoder
        self.layers = (layers or LastLayer)(
            hidden_size=encoder.config.hidden_size, num_layers=encoder.config.num_hidden_layers
        )
        checkpoint_pooler = detach_pooler(encoder)
        self.pooling = pooling(hidden_size=self.layers.out_features)
        if self.pooling.starts_from_encoder_pooler:
            self.pooling.load_encoder_pooler(checkpoint_pooler, encoder_name)
        if classifier_dropout is None:
            classifier_dropout = getattr(encoder.config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(self.pooling.out_features, num_labels)
        self.classifier.weight.data.normal_(0.0, getattr(encoder.config, "initializer_range", 0.02))
        self.classifier.bias.data.zero_()
        self.freeze = freeze
        if freeze:
            self.encoder.requires_grad_(False)
            # a frozen encoder is the pretrained one: checkpoints keep the trained head only (90 MB less a job
            # for MiniLM) and loading them leaves the encoder as it is
            self.strict_loading = False
            if head_lr is not None and lr not in (head_lr, ENCODER_LR):  # the user set model.lr for a probe
                log.warning(
                    "encoder.freeze=true: the encoder does not train, so model.lr (%g) is unused; the layer mix, "
                    "pooler and classifier train at model.head_lr (%g)",
                    lr,
                    head_lr,
                )
        # from_pretrained returns the encoder in eval mode and Lightning keeps submodules' modes as they
        # are: without this, dropout would stay off during fine-tuning
        self.train()

        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_labels)]
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_labels, average="micro"),
                "f1_macro": MulticlassF1Score(num_labels, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_f1_per_class = MulticlassF1Score(num_labels, average=None)
        self.test_f1_per_class = MulticlassF1Score(num_labels, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_labels)
        self.test_predictions: list[dict] = []  # filled by the last test run, one dict per example
        self._tokens = torch.zeros(2, dtype=torch.long)  # (real, padded) training tokens this epoch
        self._resume_rng_state: torch.Tensor | None = None  # set when a checkpoint is loaded to resume
        self.test_confusion_matrix: torch.Tensor | None = None  # rows: true class, columns: predicted
        self.observe_pooler_inputs: Callable | None = None  # called with what the pooler reads (callbacks)

    def train(self, mode: bool = True) -> PoolingClassifier:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # a linear probe reads a fixed, deterministic encoder
        return self

    def token_states(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """What the pooler reads: the selected layers' token states (B, T, layers.out_features)."""
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        if not self.layers.all_layers:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs)
        return self.layers(out.hidden_states)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, hidden_states=None) -> torch.Tensor:
        """Logits (B, num_labels) from token ids, or from precomputed final-layer token states (B, T, H)."""
        return self.logits_and_auxiliary(input_ids, attention_mask, token_type_ids, hidden_states)[0]

    def logits_and_auxiliary(self, input_ids=None, attention_mask=None, token_type_ids=None, hidden_states=None):
        """The logits, and the pooler's auxiliary loss for this batch (``Pooler.pool``; ``None`` for most)."""
        if hidden_states is None:
            hidden_states = self.token_states(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        elif self.layers.all_layers:
            raise ValueError("precomputed final-layer token states cannot feed a model that mixes several layers")
        pooled, auxiliary = self.pooling.pool(hidden_states, attention_mask)  # (B, H_out)
        if self.observe_pooler_inputs is not None:  # run.learned.LearnedParts measures the token weights in tests
            self.observe_pooler_inputs(hidden_states, attention_mask)
        return self.classifier(self.dropout(pooled)), auxiliary  # (B, num_labels)

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The cross-entropy loss, the logits and the pooler's auxiliary loss of a batch."""
        logits, auxiliary = self.logits_and_auxiliary(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
        return F.cross_entropy(logits.float(), batch["labels"]), logits, auxiliary

    # --- exact resume: the checkpoint carries torch's RNG state, restored right before the next training step
    # (not at load time: creating the resumed epoch's data iterator draws from the RNG, which the
    # uninterrupted run did at the start of the epoch)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.freeze:
            state = checkpoint["state_dict"]
            checkpoint["state_dict"] = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        checkpoint["epoch_tokens"] = self._tokens.clone()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resume_rng_state = checkpoint.get("torch_rng_state")
        if "epoch_tokens" in checkpoint:
            self._tokens = checkpoint["epoch_tokens"].clone()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._resume_rng_state is not None:
            torch.set_rng_state(self._resume_rng_state)
            self._resume_rng_state = None

    def on_train_epoch_start(self) -> None:
        self._tokens = torch.zeros(2, dtype=torch.long)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _, extra = self.model_step(batch)  # extra: e.g. self_attentive's penalty
        if extra is not None:
            self.log("train/penalty", extra, batch_size=batch["labels"].numel())
            loss = loss + extra
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); stopping instead of training on. "
                "Try a lower model.lr, or trainer.precision=32-true."
            )
        if self._logging_step():  # self.log costs ~1 ms a call: a linear probe's steps take about that
            self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].numel())
        mask = batch["attention_mask"]
        self._tokens += torch.tensor([int(mask.sum()), mask.numel()])
        return loss

    def _logging_step(self) -> bool:
        """Whether this step's training loss is logged: the steps Lightning writes (every ``log_every_n_steps``)
        and the last of the epoch (its value is the one results.json keeps)."""
        trainer = self._trainer
        if trainer is None:
            return True
        last = trainer.fit_loop.epoch_loop.batch_progress.current.ready == trainer.num_training_batches
        return (self.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0 or last or self.global_step == 0

    def on_train_epoch_end(self) -> None:
        real, total = self._tokens.tolist()
        if total:  # the share of the training compute spent on padding
            self.log("train/pad_fraction", 1 - real / total)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits, _ = self.model_step(batch)
        n = batch["labels"].numel()
        self.val_metrics.update(logits, batch["labels"])
        self.val_f1_per_class.update(logits, batch["labels"])
        self.log("val/loss", loss, batch_size=n, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self._log_per_class("val", self.val_f1_per_class.compute())
        self.val_metrics.reset()
        self.val_f1_per_class.reset()

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits, _ = self.model_step(batch)
        labels = batch["labels"]
        self.test_metrics.update(logits, labels)
        self.test_f1_per_class.update(logits, labels)
        self.test_confusion.update(logits, labels)
        self.log("test/loss", loss, batch_size=labels.numel(), sync_dist=True)
        probs = logits.float().softmax(-1)
        preds = probs.argmax(-1)
        for i, y, yhat, p in zip(batch["idx"].tolist(), labels.tolist(), preds.tolist(), probs.tolist(), strict=True):
            self.test_predictions.append({"idx": i, "label": y, "pred": yhat, "probs": p})

    def on_test_epoch_end(self) -> None:
        self.test_predictions = gather_rows(self.test_predictions)  # DDP: every rank's share, each example once
        self.log_dict(self.test_metrics.compute())
        self._log_per_class("test", self.test_f1_per_class.compute())
        self.test_confusion_matrix = self.test_confusion.compute().cpu()
        self.test_metrics.reset()
        self.test_f1_per_class.reset()
        self.test_confusion.reset()

    def _log_per_class(self, split: str, f1: torch.Tensor) -> None:
        self.log_dict({f"{split}/f1_{name}": v for name, v in zip(self.label_names, f1, strict=True)})

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        head_lr = self.hparams.head_lr or self.hparams.lr
        groups = []
        for part, lr in ((self.encoder, self.hparams.lr), (self.head_modules(), head_lr)):
            trainable = [p for p in part.parameters() if p.requires_grad]
            # biases, LayerNorm weights (and other 1-d parameters) are not decayed, as in BERT's recipe
            decay = [p for p in trainable if p.ndim >= 2]
            no_decay = [p for p in trainable if p.ndim < 2]
            groups += [
                {"params": decay, "weight_decay": self.hparams.weight_decay, "lr": lr},
                {"params": no_decay, "weight_decay": 0.0, "lr": lr},
            ]
        params = [p for g in groups for p in g["params"]]
        # fp16 needs a gradient scaler, whose unscaling a fused optimizer does itself: not with Lightning's clipping
        self._fused = (
            self.hparams.fused_optimizer
            and "16-mixed" != str(self.trainer.precision)
            and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        )
        fused = self._fused
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.hparams.lr, fused=fused or None)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(self.hparams.warmup_ratio * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's mixed-precision plugin refuses to clip for a fused optimizer, which it takes to unscale
        fp16 gradients itself; in fp32 and bf16 nothing is scaled, so clip here as Lightning would."""
        if not (gradient_clip_val and getattr(self, "_fused", False)):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def head_modules(self) -> nn.ModuleList:
        """Everything but the encoder: the layer selector, the pooler and the classifier."""
        return nn.ModuleList([self.layers, self.pooling, self.classifier])
