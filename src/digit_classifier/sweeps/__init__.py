"""Sweeps: the summary of a sweep folder, its best trial, and Optuna's plots."""
