"""Training: MNIST data module, augmentation, LightningModule, callbacks, train and eval entry points."""
