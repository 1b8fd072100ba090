"""Evaluation entry point: test accuracy and loss of a checkpoint, written to JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from digit_classifier.checkout import CONFIGS
from digit_classifier.training.module import DigitClassifier

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` on the MNIST test set and write ``<output_dir>/eval.json``: accuracy,
    loss, and the misread digits by true and predicted class (``test_errors``)."""
    checkpoint = Path(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"ckpt_path {str(checkpoint)!r} is not a file")
    datamodule = hydra.utils.instantiate(cfg.data)
    model = DigitClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    (results,) = trainer.test(model, datamodule=datamodule)
    report = {"ckpt_path": str(checkpoint.resolve()), **{k: float(v) for k, v in results.items()}}
    report["test_errors"] = model.test_errors()
    output = Path(cfg.paths.output_dir) / "eval.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    log.info("Wrote %s: %s", output, report)
    return report


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
