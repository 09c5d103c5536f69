"""Side-by-side speed and memory benchmarks of poolbench on this machine.

    python benchmarks/bench.py all            # everything below, each variant in its own process
    python benchmarks/bench.py step           # (a) one training step: poolbench vs a plain PyTorch loop
    python benchmarks/bench.py epoch VARIANT  # (b) one epoch: poolbench | trainer | fixed128 [--no-fused]
    python benchmarks/bench.py frozen --cache/--no-cache   # (c) a 5-pooling x 3-seed linear-probe sweep
    python benchmarks/bench.py profile        # where one default epoch's time goes (torch.profiler)
    python benchmarks/bench.py speed          # the issue-17 set: profile, epochs (fused or not, bf16/fp32), sweeps

On a CUDA machine the same commands run on the GPU, and every result says which device it was measured on
(``device``; the profile counts the kernels' time on the device). Without one they run on the CPU and say so.

Every variant runs in a fresh process so that its peak memory (d) is its own. Results are printed as JSON
lines and, for ``all``, as the Markdown table pasted into benchmarks/README.md. Ratios, not absolute times,
are the result: the machine is noisy, so steps are repeated and medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def emit(**result) -> None:
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def one_epoch_trainer(batches: int, precision: str):
    """A bare Trainer for timing: one epoch of ``batches`` training batches, no validation, logging or checkpoints."""
    import lightning.pytorch as pl

    return pl.Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        accelerator=device(),
        logger=False,
        precision=precision,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def device_name() -> str:
    """What the figures were measured on: the GPU's name, or "cpu" and the CPU's."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {machine()['cpu']}"


def sync() -> None:
    """Wait for the device (CUDA runs asynchronously): a timing then covers the work, not its launch."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_peak_gflops(precision: str = "32-true", n: int = 2048, repeats: int = 10) -> float:
    """Measured matmul throughput of this machine in the precision used (bf16 for ``bf16-mixed``): the 'peak'
    the other numbers are compared with (a 2048² matmul, best of ``repeats``)."""
    import torch

    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    n = 8192 if device() == "cuda" else n
    a, b = (torch.randn(n, n, device=device(), dtype=dtype) for _ in range(2))
    a @ b
    times = []
    for _ in range(repeats):
        if device() == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device() == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9


def train_flops_per_token(config, mean_len: float) -> float:
    """Forward+backward FLOPs per real token: 6 N (non-embedding weights) + 12 L H T (attention scores)."""
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    n = layers * (4 * h * h + 2 * h * inter)
    return 6 * n + 12 * layers * h * mean_len


def load_default_data(max_length: int = 128):
    """The default hutto4 training split, tokenised by the default encoder's tokenizer."""
    from poolbench.data import Hutto4DataModule
    from poolbench.model.encoder import load_tokenizer, packaged_minilm_path

    tokenizer = load_tokenizer(packaged_minilm_path())
    cache = os.environ.get("POOLBENCH_CACHE", "~/.cache/poolbench")
    dm = Hutto4DataModule(tokenizer, cache_dir=cache, max_length=max_length, batch_size=32)
    dm.prepare_data()
    dm.setup()
    return tokenizer, dm


# --- (a) one training step ---------------------------------------------------------------------------------
def bench_step(args) -> None:
    import lightning.pytorch as pl
    import torch
    from transformers import BertForSequenceClassification

    from poolbench.model.classifier import PoolingClassifier
    from poolbench.model.encoder import from_pretrained, packaged_minilm_path
    from poolbench.model.poolers import DenseTanhPooling

    torch.manual_seed(0)
    tokenizer, dm = load_default_data()
    texts = dm.raw["train"].texts[: args.batch_size]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=args.length, return_tensors="pt")
    batch = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "token_type_ids": enc["token_type_ids"],
        "labels": torch.arange(args.batch_size) % 4,
    }
    dev = device()
    path = packaged_minilm_path()

    class StepTimer(pl.Callback):
        def __init__(self):
            self.times, self.last = [], None

        def on_train_batch_end(self, *a):
            sync()
            now = time.perf_counter()
            if self.last is not None:
                self.times.append(now - self.last)
            self.last = now

    def poolbench_steps(n: int, precision: str) -> list[float]:
        model = PoolingClassifier(from_pretrained(path), DenseTanhPooling, num_labels=4, warmup_ratio=0.0)
        timer = StepTimer()
        trainer = pl.Trainer(
            max_steps=n + 1,
            accelerator=dev,
            precision=precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            limit_val_batches=0,
        )
        trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([batch] * (n + 1), batch_size=None))
        return timer.times

    def plain_steps(n: int) -> list[float]:
        model = BertForSequenceClassification.from_pretrained(path, num_labels=4).train().to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
        on_device = {k: v.to(dev) for k, v in batch.items()}
        times, last = [], None
        for _ in range(n + 1):
            loss = model(**on_device).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            sync()
            now = time.perf_counter()
            if last is not None:
                times.append(now - last)
            last = now
        return times

    runs = {"plain_fp32": [], "poolbench_fp32": [], "poolbench_bf16": []}
    for _ in range(args.rounds):  # interleaved, so that drifts of the machine hit every variant alike
        runs["plain_fp32"] += plain_steps(args.steps)
        runs["poolbench_fp32"] += poolbench_steps(args.steps, "32-true")
        runs["poolbench_bf16"] += poolbench_steps(args.steps, "bf16-mixed")
    med = {k: statistics.median(v) for k, v in runs.items()}
    emit(
        bench="step",
        device=device_name(),
        batch_size=args.batch_size,
        length=args.length,
        median_step_s=med,
        speed_ratio_poolbench_vs_plain=med["plain_fp32"] / med["poolbench_fp32"],
        speed_ratio_bf16_vs_fp32=med["poolbench_fp32"] / med["poolbench_bf16"],
        steps_each=len(runs["plain_fp32"]),
    )


# --- (b) one epoch -----------------------------------------------------------------------------------------
def bench_epoch(args) -> None:
    import torch

    from poolbench.model.encoder import from_pretrained, packaged_minilm_path

    torch.manual_seed(0)
    tokenizer, dm = load_default_data()
    path = packaged_minilm_path()
    config = from_pretrained(path).config
    train = dm.splits["train"]
    n = int(len(train) * args.fraction)
    precision = args.precision if args.variant == "poolbench" else "32-true"
    peak = matmul_peak_gflops(precision)

    if args.variant == "poolbench":
        real_tokens, seconds, padded = poolbench_epoch(dm, path, n, args)
    elif args.variant == "trainer":
        real_tokens, seconds, padded = trainer_epoch(tokenizer, train.select(range(n)), path, args)
    else:
        real_tokens, seconds, padded = fixed_epoch(tokenizer, train.select(range(n)), path, args)
    flops = train_flops_per_token(config, real_tokens / n) * real_tokens
    emit(
        bench="epoch",
        variant=args.variant,
        device=device_name(),
        fused_adamw=args.fused if args.variant == "poolbench" else False,
        precision=precision,
        examples=n,
        seconds=seconds,
        real_tokens=real_tokens,
        pad_fraction=1 - real_tokens / padded,
        real_tokens_per_s=real_tokens / seconds,
        useful_gflops=flops / seconds / 1e9,
        matmul_peak_gflops=peak,  # of the precision used
        fraction_of_peak=flops / seconds / 1e9 / peak,
        estimated_ablation_hours=ablation_hours(seconds, n, dm) if args.variant == "poolbench" else None,
    )


FORWARD_SHARE = 1 / 3  # an evaluation pass costs a forward: 2 of the 6 FLOPs per weight and token of a step
STARTUP_S = 20  # a job's fixed cost here: importing the stack (~6 s), loading encoder and data, checkpoints


def ablation_hours(seconds: float, n: int, dm, jobs: int | None = None, epochs: int | None = None) -> float:
    """The wall time of the fine-tuned ablation of README "Sweeps" (every ``conf/pooling`` choice x 3 seeds, at the
    default ``trainer.max_epochs``) from a measured training pass over ``n`` examples of ``dm``'s training split:
    per job, its epochs, one validation pass per epoch, the test, and ``STARTUP_S``."""
    from omegaconf import OmegaConf

    if jobs is None:
        jobs = 3 * len(list((ROOT / "conf" / "pooling").glob("*.yaml")))
    if epochs is None:
        epochs = OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml").max_epochs
    sizes = {split: len(dm.splits[split]) for split in ("train", "val", "test")}
    per_text = seconds / n
    epoch = per_text * sizes["train"]
    val, test = (per_text * FORWARD_SHARE * sizes[s] for s in ("val", "test"))
    return jobs * (epochs * (epoch + val) + test + STARTUP_S) / 3600


def poolbench_epoch(dm, path, n, args):
    """poolbench's own training loop: Lightning, length-grouped batches, dynamic padding."""

    from poolbench.model.classifier import PoolingClassifier
    from poolbench.model.encoder import from_pretrained
    from poolbench.model.poolers import MeanPooling

    model = PoolingClassifier(from_pretrained(path), MeanPooling, num_labels=4, fused_optimizer=args.fused)
    batches = -(-n // dm.batch_size)
    trainer = one_epoch_trainer(batches, args.precision)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - t0
    real, total = model._tokens.tolist()
    return real, seconds, total


def trainer_epoch(tokenizer, train, path, args):
    """What users write instead: transformers.Trainer with its default DataCollatorWithPadding."""
    from transformers import (
        BertForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    counts = {"real": 0, "total": 0}

    collator = DataCollatorWithPadding(tokenizer)

    def counting_collator(features):
        batch = collator(features)
        counts["real"] += int(batch["attention_mask"].sum())
        counts["total"] += batch["attention_mask"].numel()
        return batch

    model = BertForSequenceClassification.from_pretrained(path, num_labels=4)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=32,
            num_train_epochs=1,
            learning_rate=5e-5,
            warmup_steps=0.1,
            weight_decay=0.01,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=device() == "cpu",
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=targs,
            train_dataset=train.remove_columns(["idx", "length"]),
            data_collator=counting_collator,
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return counts["real"], seconds, counts["total"]


def fixed_epoch(tokenizer, train, path, args):
    """The tutorial recipe: every batch padded to max_length=128, plain PyTorch loop."""
    import torch
    from transformers import BertForSequenceClassification

    dev = device()
    model = BertForSequenceClassification.from_pretrained(path, num_labels=4).train().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    order = torch.randperm(len(train)).tolist()
    real = total = 0
    t0 = time.perf_counter()
    for start in range(0, len(order), 32):
        rows = train.select(order[start : start + 32])
        enc = tokenizer.pad({"input_ids": rows["input_ids"]}, padding="max_length", max_length=128, return_tensors="pt")
        labels = torch.tensor(rows["labels"], device=dev)
        ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        real += int(enc["attention_mask"].sum())
        total += enc["attention_mask"].numel()
    sync()
    return real, time.perf_counter() - t0, total


# --- (c) frozen sweep ----------------------------------------------------------------------------------------
def bench_frozen(args) -> None:
    """The real command a user runs: a linear-probe multirun, 5 poolings x 3 seeds, with or without the cache."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "POOLBENCH_CACHE": str(Path(tmp) / "cache"), "WANDB_MODE": "disabled"}
        # the tokenised data and the download are shared with the user cache: copy them, so that both variants
        # start from the same state (token states not computed yet)
        user_cache = Path(os.environ.get("POOLBENCH_CACHE", "~/.cache/poolbench")).expanduser()
        subprocess.run(["cp", "-r", str(user_cache), env["POOLBENCH_CACHE"]], check=True)
        subprocess.run(["rm", "-rf", str(Path(env["POOLBENCH_CACHE"]) / "features")], check=True)
        cmd = [
            sys.executable,
            "train.py",
            "-m",
            "pooling=cls,pooler,mean,max,attention",
            f"seed={args.seeds}",
            "encoder.freeze=true",
            f"encoder.cache_features={str(args.cache).lower()}",
            "logger=none",
            f"trainer.max_epochs={args.epochs}",
            "trainer.enable_progress_bar=false",
            "model.head_lr=1e-3",
            f"hydra.sweep.dir={tmp}/sweep",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = proc.communicate()
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"frozen sweep failed:\n{out[-3000:]}")
        f1 = {}
        for r in Path(tmp, "sweep").glob("*/results.json"):
            res = json.loads(r.read_text())
            f1[res["overrides"]] = res["metrics"]["test/f1_macro"]
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    emit(
        bench="frozen", cache=args.cache, jobs=len(f1), seconds=seconds, test_f1_macro=f1, sweep_peak_rss_mib=child_peak
    )


# --- (d) where the time goes ----------------------------------------------------------------------------------
CATEGORIES = [  # (name, substrings of the profiler's op names), first match wins
    ("optimizer (AdamW)", ("adamw", "adam", "_foreach", "zero_")),
    ("embedding gradient", ("embedding_dense_backward", "embedding_backward")),
    (
        "attention (scaled dot product)",
        ("scaled_dot_product", "_flash_attention", "_efficient_attention", "bmm", "softmax"),
    ),
    ("matmuls (linear layers)", ("addmm", "aten::mm", "matmul", "linear")),
    ("layer norm / GELU / dropout", ("layer_norm", "gelu", "dropout", "native_dropout")),
    ("casts (autocast)", ("aten::to", "_to_copy", "copy_")),
    ("data loading and collation", ("collate", "dataloader", "pad", "enumerate(DataLoader)")),
]


def bench_profile(args) -> None:
    """One default epoch's steps under torch.profiler: self time per kind of work."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from poolbench.model.classifier import PoolingClassifier
    from poolbench.model.encoder import from_pretrained, packaged_minilm_path
    from poolbench.model.poolers import MeanPooling

    torch.manual_seed(0)
    _, dm = load_default_data()
    model = PoolingClassifier(from_pretrained(packaged_minilm_path()), MeanPooling, num_labels=4)
    trainer = one_epoch_trainer(args.steps + 5, args.precision)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device() == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        trainer.fit(model, datamodule=dm)
    wall = time.perf_counter() - t0
    shares: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next(
            (k for k, keys in CATEGORIES if any(s.lower() in name for s in keys)),
            "other (Lightning, Python, small ops)",
        )
        # on a GPU the kernels' own time on the device; on a CPU the CPU's
        spent = event.self_device_time_total if device() == "cuda" else event.self_cpu_time_total
        shares[kind] = shares.get(kind, 0.0) + spent / 1e6
    total = sum(shares.values())
    emit(
        bench="profile",
        device=device_name(),
        time_counted="device" if device() == "cuda" else "cpu",
        precision=args.precision,
        steps=args.steps + 5,
        wall_seconds=wall,
        profiled_seconds=total,
        share={k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
    )


# --- all ---------------------------------------------------------------------------------------------------
def run_speed(args) -> None:
    """The speed set: where the time goes, epochs with and without fused AdamW in both precisions, the sweeps."""
    frac = ["--fraction", str(args.fraction)]
    commands = [["profile"]]
    for precision in ("bf16-mixed", "32-true"):
        commands += [
            ["epoch", "poolbench", "--precision", precision, *frac, flag] for flag in ("--fused", "--no-fused")
        ]
    commands += [["frozen", "--cache"], ["frozen", "--no-cache"]]
    run_commands(commands, ROOT / "benchmarks" / "speed.json")


def run_all(args) -> None:
    commands = [["step"], ["epoch", "poolbench"], ["epoch", "poolbench", "--precision", "bf16-mixed"]]
    commands += [["epoch", "trainer"], ["epoch", "fixed128"]]
    commands += [["frozen", "--cache"], ["frozen", "--no-cache"]]
    extra = ["--fraction", str(args.fraction)]
    run_commands([[*c, *(extra if c[0] == "epoch" else [])] for c in commands], ROOT / "benchmarks" / "results.json")


def run_commands(commands: list[list[str]], out: Path) -> None:
    """Each command in its own process (its peak memory is its own); the results as JSON lines and into ``out``."""
    results = []
    for cmd in commands:
        full = [sys.executable, __file__, *cmd]
        print("$", " ".join(full[1:]), flush=True)
        done = subprocess.run(full, cwd=ROOT, capture_output=True, text=True)
        lines = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
            sys.exit(f"{cmd} failed")
        results.append(json.loads(lines[-1]))
        print(lines[-1], flush=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


def machine() -> dict:
    import lightning
    import torch
    import transformers

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "transformers": transformers.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("step")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("epoch")
    p.add_argument("variant", choices=["poolbench", "trainer", "fixed128"])
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the training split (1 = one epoch)")
    p.add_argument("--precision", default="32-true", help="poolbench variant only: 32-true or bf16-mixed")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True, help="fused AdamW (poolbench)")
    p = sub.add_parser("profile")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--precision", default="bf16-mixed")
    p = sub.add_parser("speed")
    p.add_argument("--fraction", type=float, default=0.5)
    p = sub.add_parser("frozen")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=1)
    p = sub.add_parser("all")
    p.add_argument("--fraction", type=float, default=1.0)
    args = parser.parse_args()
    commands = {
        "step": bench_step,
        "epoch": bench_epoch,
        "frozen": bench_frozen,
        "all": run_all,
        "profile": bench_profile,
        "speed": run_speed,
    }
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
