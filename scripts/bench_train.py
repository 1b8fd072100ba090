"""Benchmark: training throughput of our Lightning step against a bare PyTorch loop.

    python scripts/bench_train.py [--steps 300] [--rounds 9] [--time-to-accuracy] [--profile]
        [--models seed_cnn digit_cnn] [--override KEY=VALUE ...]

For the seed CNN (batch 60) and the default network (batch 256), both paths train the
same network with the same optimizer, batch size, augmentation and in-memory tensors from
``MNISTDataModule``; the Lightning path is ``train.py``'s own configuration (metrics,
logging, callbacks) minus checkpoint files. Prints images per second after a warm-up and
the Lightning/bare ratio. On a small shared machine one measurement of a few seconds
varies by up to 2x with the machine's load, so the two paths are measured back to back
``--rounds`` times and each path's fastest run is reported (the median of the rounds' own
ratios too). ``--time-to-accuracy`` then trains the default configuration and reports the
wall time (test evaluations excluded) until test accuracy first reaches ``--target``.
``--profile`` prints, for each model, where the bare loop's time goes by operator
(``torch.profiler``, ``--steps`` steps).
``--override`` takes Hydra overrides for every configuration (the tests run it on a small
MNIST copy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from digit_classifier.bench.reports import write_report
from digit_classifier.bench.training import (
    MODELS,
    bench_config,
    compare,
    profile_bare_loop,
    time_to_accuracy,
)
from digit_classifier.checkout import data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(data_dir()), help="holds MNIST/raw")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    parser.add_argument(
        "--rounds", type=int, default=9, help="back-to-back bare/Lightning measurements; fastest reported"
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--override", action="append", default=[], help="a Hydra override for every configuration"
    )
    parser.add_argument("--time-to-accuracy", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print the bare loop's operator profile")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy for --time-to-accuracy")
    parser.add_argument("--output", default="logs/bench/train.json")
    args = parser.parse_args()
    report: dict = {"torch_threads": torch.get_num_threads(), "steps": args.steps, "models": {}}
    for name in args.models:
        cfg = bench_config([f"data.data_dir={args.data_dir}", *MODELS[name], *args.override])
        result = report["models"][name] = compare(cfg, args.steps, args.rounds)
        print(
            f"{name:>10} batch {result['batch_size']:>3}: bare {result['bare_images_per_s']:8d} img/s, "
            f"lightning {result['lightning_images_per_s']:8d} img/s, "
            f"lightning/bare {result['lightning_over_bare']:.3f} (fastest of {args.rounds} runs each; "
            f"median of the rounds' ratios {result['median_round_ratio']:.3f})",
            flush=True,
        )
        if args.profile:
            print(profile_bare_loop(cfg, args.steps), flush=True)
    if args.time_to_accuracy:
        cfg = bench_config([f"data.data_dir={args.data_dir}", *args.override])
        result = report["time_to_accuracy"] = time_to_accuracy(cfg, args.target)
        reached = (
            f"after {result['seconds']:.0f} s of training"
            if result["seconds"] is not None
            else f"not within {cfg.trainer.max_epochs} epochs"
        )
        print(
            f"default config: {args.target:.1%} test accuracy {reached}; "
            f"per epoch (epoch, train s, test acc): {result['epochs']}"
        )
    write_report(Path(args.output), report)


if __name__ == "__main__":
    main()
