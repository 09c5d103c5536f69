"""``check_only=true``: what a careful user runs before a long sweep. The job's config is composed and checked,
its data loaded and validated (class counts per split printed), its tokenizer and encoder loaded; nothing trains.

    python train.py data=csv data.train=train.csv check_only=true          # one job
    python train.py pooling=cls,mean data.domains=tweets,nyt check_only=true -m   # every job of a sweep
"""

from __future__ import annotations

import sys

from hydra.utils import instantiate
from omegaconf import DictConfig

from poolbench.errors import user_error
from poolbench.record import RESULTS, RunRecord
from poolbench.run.checks import problems


def preflight(cfg: DictConfig, job) -> None:
    """Check one job without training it; print what was found. Alone, exit 2 when something is wrong; in a
    sweep, record ``checked`` or ``failed`` (the sweep's summary lists every problem)."""
    found, lines = problems(cfg), []
    if not found:
        for what, load in (("data", _data), ("encoder", _encoder)):
            try:
                lines += load(cfg)
            except Exception as err:
                mistake = user_error(err)
                if mistake is None:
                    raise
                found.append(f"{what}: {mistake}")
    title = job.name or "defaults"
    print(f"[poolbench check] {title}: " + ("OK" if not found else f"{len(found)} problem(s)"))
    print("\n".join(["  " + line for line in lines] + ["  problem: " + p for p in found]), flush=True)
    if job.multirun:
        rec = RunRecord(
            status="failed" if found else "checked",
            choices=job.choices,
            overrides=job.name,
            output_dir=str(job.output_dir),
            error="; ".join(found) or None,
            user_error=bool(found) or None,
        )
        rec.write(job.output_dir / RESULTS)
    elif found:
        print(f"poolbench: {len(found)} problem(s) found; nothing was trained", file=sys.stderr)
        raise SystemExit(2)


def _data(cfg: DictConfig) -> list[str]:
    tokenizer = instantiate(cfg.encoder.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    labels = {s: datamodule.splits[s]["labels"] for s in datamodule.splits}
    return [
        f"data: {cfg.data._target_.rsplit('.', 1)[-1]}, {datamodule.num_labels} classes, class counts:",
        *("  " + line for line in datamodule.class_count_table(labels).splitlines()),
    ]


def _encoder(cfg: DictConfig) -> list[str]:
    encoder = instantiate(cfg.encoder.model)
    c = encoder.config
    params = sum(p.numel() for p in encoder.parameters())
    kind = "pretrained" if cfg.encoder.pretrained else "randomly initialised, NOT pretrained"
    return [
        f"encoder: {c.model_type}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"{c.max_position_embeddings} positions, vocabulary {c.vocab_size}, {params / 1e6:.1f}M parameters "
        f"({kind})"
    ]
