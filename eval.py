"""Evaluate a checkpoint on the MNIST test set: ``python eval.py ckpt_path=<file>``."""

from digit_classifier.training.evaluate import main

if __name__ == "__main__":
    main()
