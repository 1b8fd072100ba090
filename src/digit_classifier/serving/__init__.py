"""From a checkpoint to a served model: export, archive, offline predict, a local TorchServe."""
