"""Train a digit classifier: ``python train.py [hydra overrides]`` (see configs/train.yaml)."""

from digit_classifier.training.train import main

if __name__ == "__main__":
    main()
