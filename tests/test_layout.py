"""The layout's rules: the .mar's runtime imports nothing of training, no path hacks, small functions."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from digit_classifier import runs

RUNTIME = ROOT / "src" / "digit_classifier" / "runtime"
ALLOWED_IN_RUNTIME = {"torch", "torchvision", "numpy", "PIL", "pyspng", "digit_classifier"}
MAX_FUNCTION_LINES = 50


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute names only (relative imports stay inside)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")), ids=lambda p: p.name)
def test_runtime_imports_only_the_standard_library_torch_numpy_and_the_png_decoders(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in ALLOWED_IN_RUNTIME, f"{path.name} imports {name}"
        if top == "digit_classifier":
            assert name.startswith("digit_classifier.runtime"), f"{path.name} imports {name}"


def test_runtime_modules_import_alone() -> None:
    """What the .mar carries imports without Lightning, Hydra, OmegaConf or TorchServe."""
    import subprocess

    probe = (
        "import sys, digit_classifier.runtime.inference; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    for forbidden in ("lightning", "hydra", "omegaconf", "ts", "torchmetrics", "optuna", "yaml"):
        assert f"'{forbidden}'" not in loaded, forbidden


def test_no_module_search_path_edits() -> None:
    """Code imports through the installed package, never by editing the search path."""
    marker = "sys" + ".path"
    for path in python_files("src", "scripts", "tests", "handlers"):
        assert marker not in path.read_text(), path


def test_tests_import_nothing_from_scripts() -> None:
    scripts = {path.stem for path in (ROOT / "scripts").glob("*.py")}
    for path in python_files("tests"):
        tops = {name.split(".")[0] for name in imported_modules(path)}
        assert not tops & scripts, f"{path.name} imports {tops & scripts} from scripts/"


def test_functions_are_small() -> None:
    long = []
    for path in python_files("src", "scripts", "handlers", "tests"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_checkpoint_names_agree_with_the_run_folder_contract() -> None:
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train")
    assert cfg.callbacks.model_checkpoint.filename == runs.BEST_CHECKPOINT
    assert cfg.callbacks.last_checkpoint.filename == runs.LAST_CHECKPOINT
    for name in ("model_checkpoint", "last_checkpoint"):
        dirpath = OmegaConf.to_container(cfg.callbacks[name], resolve=False)["dirpath"]
        assert Path(dirpath).name == runs.CHECKPOINT_DIR


def test_configs_name_metrics_that_training_logs() -> None:
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"])
    assert cfg.optimized_metric == runs.VAL_ACC_BEST
    assert cfg.callbacks.model_checkpoint.monitor == runs.VAL_LOSS
    assert cfg.callbacks.optuna_pruning.monitor == runs.VAL_ACC
