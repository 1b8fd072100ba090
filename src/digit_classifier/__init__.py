"""MNIST digit classifier: Lightning + Hydra training, TorchServe serving, a drawing page.

Each subpackage is one part of the pipeline:

* ``runtime``: what a ``.mar`` carries (networks, preprocessing, request-to-response
  inference); it imports nothing but the standard library, torch, torchvision, numpy,
  Pillow and pyspng, so it is the only code TorchServe's workers run besides the handler.
* ``training``: the data module, augmentation, LightningModule, callbacks, and the
  ``train`` and ``evaluate`` entry points behind ``train.py`` and ``eval.py``.
* ``sweeps``: sweep summaries, the best trial, Optuna's plots.
* ``serving``: checkpoint export, ``.mar`` archiving, offline prediction, a local TorchServe.
* ``web``: the drawing page and its small server.
* ``bench``: what the benchmark and measurement scripts share.

``runs`` is the run-folder contract that training writes and the others read.
This file must stay free of imports: the ``.mar`` carries it with ``runtime``.
"""
