"""Sweeps through train.py -m: a grid, Optuna searches (pruned, resumed, shared), summaries.

Trials train for a few batches on the small MNIST copy (``small_mnist``), so the whole
file takes a couple of minutes on a busy two-core machine.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import requests
import yaml
from conftest import ROOT, run_script, script_env
from hydra import compose, initialize_config_dir
from optuna.storages import InMemoryStorage, RDBStorage
from optuna.trial import TrialState
from PIL import Image
from postgres_support import local_postgres
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util.tensor_util import make_ndarray

from digit_classifier.checkout import CONFIGS
from digit_classifier.serving.torchserve import free_ports
from digit_classifier.sweeps.plots import study_from_snapshot
from digit_classifier.sweeps.summary import write_summary
from hydra_plugins.digit_optuna_sweeper import TRIALS_FILE
from hydra_plugins.digit_optuna_sweeper._impl import OptunaSearch
from hydra_plugins.digit_optuna_sweeper._space import parse_search_space
from hydra_plugins.digit_optuna_sweeper._study import HOST, counted, export_study, trial_id

pytestmark = pytest.mark.slow


def _search_space() -> dict[str, str]:
    """The search space ``hparams_search=optuna`` sweeps (``configs/hparams_search/optuna.yaml``)."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    return dict(cfg.hydra.sweeper.params)


SEARCH = _search_space()


def tiny(data_dir: Path, sweep_dir: Path, *extra: str, logger: str = "none") -> list[str]:
    """A multirun of a-few-batch trials into ``sweep_dir``."""
    return [
        "-m",
        "debug=fast",
        f"data.data_dir={data_dir}",
        "data.val_size=200",
        "data.download=false",
        f"logger={logger}",
        "callbacks.lr_monitor=null",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


def sqlite_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir.parent / 'study.db'}"


def tiny_search(
    data_dir: Path, sweep_dir: Path, n_trials: int, *extra: str, storage: str | None = None
) -> list[str]:
    """An Optuna search of tiny trials; its study in SQLite beside ``sweep_dir`` unless ``storage``."""
    return tiny(
        data_dir,
        sweep_dir,
        "hparams_search=optuna",
        f"hydra.sweeper.storage={storage or sqlite_storage(sweep_dir)}",
        f"hydra.sweeper.n_trials={n_trials}",
        *extra,
    )


def load_study(sweep_dir: Path, storage: str | None = None, name: str = "digit_cnn_tpe") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or sqlite_storage(sweep_dir))


def overrides(trial_dir: Path) -> list[str]:
    return yaml.safe_load((trial_dir / ".hydra" / "overrides.yaml").read_text())


def metrics(trial_dir: Path) -> dict:
    return json.loads((trial_dir / "metrics.json").read_text())


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def trial_dirs(sweep_dir: Path) -> set[str]:
    return {p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()}


def sampled(trial_dir: Path) -> dict[str, str]:
    pairs = (o.split("=", 1) for o in overrides(trial_dir))
    return {key: value for key, value in pairs if key in SEARCH}


def test_grid_sweep_runs_every_combination_in_its_own_folder(small_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "grid"
    run_script(
        "train.py",
        *tiny(small_mnist, sweep, "optimizer.lr=1e-3,1e-2", "data.batch_size=32,64"),
        "++hydra.callbacks.sweep_summary._target_=digit_classifier.sweeps.summary.SweepSummary",
    )
    assert trial_dirs(sweep) == {"0", "1", "2", "3"}
    combos = {(o[-2], o[-1]) for o in (overrides(sweep / n) for n in "0123")}
    assert combos == {
        (f"optimizer.lr={lr}", f"data.batch_size={bs}") for lr in ("0.001", "0.01") for bs in (32, 64)
    }

    rows = summary_rows(sweep)
    accs = [float(r["best_val_acc"]) for r in rows]
    assert len(rows) == 4 and accs == sorted(accs, reverse=True)
    assert {r["state"] for r in rows} == {"complete"}
    best_dir = max(("0", "1", "2", "3"), key=lambda n: metrics(sweep / n)["best_val_acc"])
    best = json.loads((sweep / "best.json").read_text())
    assert best["trial"] == best_dir
    assert best["best_ckpt_path"] == metrics(sweep / best_dir)["best_ckpt_path"]
    assert Path(best["best_ckpt_path"]).is_file()
    assert "| rank | trial |" in (sweep / "summary.md").read_text()


TUNED = {
    "model.net.name",
    "model.net.width",
    "optimizer",
    "optimizer.lr",
    "scheduler",
    "data.batch_size",
    "data.augment.strength",
    "trainer.max_epochs",
    "trainer.precision",
    "seed",
}
FINAL = {"final/best_val_acc": "best_val_acc", "final/test_acc": "test_acc", "final/test_loss": "test_loss"}


def _hparams_plugin_data(events: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    return plugin_data_pb2.HParamsPluginData.FromString(events.SummaryMetadata(tag).plugin_data.content)


def test_tensorboard_hparams_compare_the_trials_of_a_grid(small_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "grid"
    run_script("train.py", *tiny(small_mnist, sweep, "optimizer.lr=1e-3,3e-3", logger="tensorboard"))
    runs = EventMultiplexer().AddRunsFromDirectory(str(sweep))
    runs.Reload()
    assert set(runs.Runs()) == {"0/tensorboard", "1/tensorboard"}, "tensorboard --logdir <sweep> lists both"

    for trial, lr in (("0", 1e-3), ("1", 3e-3)):
        events = runs.GetAccumulator(f"{trial}/tensorboard")
        start = _hparams_plugin_data(events, "_hparams_/session_start_info").session_start_info
        knobs = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
        assert set(knobs) >= TUNED, TUNED - set(knobs)
        assert not [k for k in knobs if "_target_" in k or k.split(".")[0] in ("paths", "callbacks", "hydra")]
        config = yaml.safe_load((sweep / trial / ".hydra" / "config.yaml").read_text())
        assert knobs["optimizer.lr"] == pytest.approx(lr)
        assert knobs["optimizer"] == config["optimizer"]["_target_"].rpartition(".")[2]
        assert knobs["data.batch_size"] == config["data"]["batch_size"]
        assert knobs["trainer.max_epochs"] == 1 and knobs["seed"] == config["seed"]

        experiment = _hparams_plugin_data(events, "_hparams_/experiment").experiment
        assert {info.name.tag for info in experiment.metric_infos} == set(FINAL)
        recorded = metrics(sweep / trial)
        for tag, key in FINAL.items():
            # The HParams tab shows a metric's last value, as read here.
            last = make_ndarray(events.Tensors(tag)[-1].tensor_proto).item()
            assert last == pytest.approx(recorded[key], rel=1e-6), tag


@pytest.fixture(scope="module")
def search(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep folder of a finished three-trial search, two epochs each, pruning on."""
    sweep = tmp_path_factory.mktemp("search") / "sweep"
    run_script(
        "train.py",
        *tiny_search(small_mnist, sweep, 3, "trainer.max_epochs=2"),
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
    )
    return sweep


def test_optuna_search_names_folders_by_trial_and_picks_the_best(search: Path) -> None:
    sweep = search
    study = load_study(sweep)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert trial_dirs(sweep) == {"0", "1", "2"}
    for trial in study.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        params = sampled(sweep / str(trial.number))
        assert set(params) == set(SEARCH)
        assert float(params["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])
        assert 1e-4 <= trial.params["optimizer.lr"] <= 1e-2
        assert trial.params["data.batch_size"] in (64, 128, 256)
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(metrics(sweep / str(trial.number))["best_val_acc"])
        else:
            assert not (sweep / str(trial.number) / "metrics.json").exists()

    rows = {r["trial"]: r for r in summary_rows(sweep)}
    assert {n: r["state"] for n, r in rows.items()} == {
        str(t.number): t.state.name.lower() for t in study.trials
    }
    best = json.loads((sweep / "best.json").read_text())
    assert best["trial"] == str(study.best_trial.number)
    assert best["best_ckpt_path"] == str(sweep.resolve() / best["trial"] / "checkpoints/best.ckpt")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_trial"] == study.best_trial.number


def test_search_ends_with_optunas_plots_linked_from_the_summary(search: Path) -> None:
    complete = [t for t in load_study(search).trials if t.state == TrialState.COMPLETE]
    expected = {"optimization_history", "parallel_coordinate", "slice"}
    if len(complete) >= 2:
        expected.add("param_importances")
    assert {path.stem for path in search.glob("*.png")} == expected
    summary = (search / "summary.md").read_text()
    for name in expected:
        assert f"]({name}.png)" in summary
        with Image.open(search / f"{name}.png") as image:
            assert image.width >= 800 and image.height >= 300


def test_plots_show_the_studys_trials_under_their_numbers(search: Path) -> None:
    snapshot = json.loads((search / TRIALS_FILE).read_text())
    rebuilt, stored = study_from_snapshot(snapshot), load_study(search)
    assert [(t.number, t.state, t.value, t.params) for t in rebuilt.trials] == [
        (t.number, t.state, t.value, t.params) for t in stored.trials
    ]


def test_optuna_dashboard_opens_the_study(search: Path, tmp_path: Path) -> None:
    port = free_ports(1)[0]
    command = [str(Path(sys.executable).with_name("optuna-dashboard")), sqlite_storage(search)]
    log = tmp_path / "dashboard.log"
    with log.open("w") as output:
        dashboard = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert dashboard.poll() is None, f"optuna-dashboard exited:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "optuna-dashboard did not answer within 60 s"
            try:
                studies = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=5).json()
                break
            except requests.ConnectionError:
                time.sleep(0.3)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)
    (study,) = studies["study_summaries"]
    assert study["study_name"] == "digit_cnn_tpe"
    assert study["directions"] == ["maximize"]


def test_importances_wait_for_two_completed_trials(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    distributions = parse_search_space(SEARCH, []).distributions
    study.tell(study.ask(distributions), 0.5)
    pruned = study.ask(distributions)
    pruned.report(0.1, step=0)
    study.tell(pruned, state=TrialState.PRUNED)
    export_study(study, None, 2, tmp_path / TRIALS_FILE)

    write_summary(tmp_path, plots=True)
    assert {path.stem for path in tmp_path.glob("*.png")} == {
        "optimization_history",
        "parallel_coordinate",
        "slice",
    }
    assert (
        "Parameter importances: needs 2 completed trials (1 so far)." in (tmp_path / "summary.md").read_text()
    )


def test_pruner_stops_hopeless_trials_after_an_epoch(small_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "pruned"
    run_script(
        "train.py",
        *tiny_search(small_mnist, sweep, 1, "trainer.max_epochs=3", "test=false"),
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=1.01",
        "hydra.sweeper.pruner.n_warmup_steps=0",
    )
    (trial,) = load_study(sweep).trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    (row,) = summary_rows(sweep)
    assert row["state"] == "pruned" and row["epochs"] == "1"
    assert float(row["best_val_acc"]) == pytest.approx(trial.intermediate_values[0])
    assert not (sweep / "best.json").exists()
    assert not list(sweep.glob("*.png"))
    assert "Optimisation history: needs 1 completed trial (0 so far)." in (sweep / "summary.md").read_text()


def _start(overrides: list[str], log: Path) -> subprocess.Popen:
    """Start train.py in its own process group, its output going to ``log``."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *overrides],
            cwd=ROOT,
            env=script_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finished(worker: subprocess.Popen, log: Path) -> None:
    code = worker.wait(timeout=400)
    assert code == 0, f"worker exited with {code}:\n{log.read_text()[-4000:]}"


def test_killed_search_resumes_without_rerunning_finished_trials(small_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "resumed"
    command = tiny_search(small_mnist, sweep, 3)
    kill_in_trial_1 = [
        "+callbacks.kill._target_=faults.KillAt",
        "+callbacks.kill.fit=1",
        "+callbacks.kill.epoch=0",
        "+callbacks.kill.batch=2",
    ]
    killed = run_script("train.py", *command, *kill_in_trial_1, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert [t.state for t in load_study(sweep).trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    finished_at = (sweep / "0" / "metrics.json").stat().st_mtime_ns

    run_script("train.py", *command)
    study = load_study(sweep)
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert study.trials[2].user_attrs["retry_of"] == 1
    assert study.trials[2].params == study.trials[1].params
    assert len(counted(study.trials)) == 3
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == finished_at
    assert sampled(sweep / "2") == sampled(sweep / "1")
    assert len({tuple(sorted(sampled(sweep / n).items())) for n in "023"}) == 3

    rows = {r["trial"]: r for r in summary_rows(sweep)}
    assert rows["1"]["state"] == "interrupted" and "retried as #2" in rows["1"]["note"]
    assert rows["2"]["note"] == "retry of #1"
    best = json.loads((sweep / "best.json").read_text())
    assert best["trial"] == str(study.best_trial.number)


README_SQL = ("CREATE ROLE optuna LOGIN PASSWORD '{password}'", "CREATE DATABASE optuna OWNER optuna")


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL database set up as the README says: a role and a database, the
    password in a password file (``~/.pgpass``; here the file ``PGPASSFILE`` names), and a
    storage URL without it."""
    password = "worker-secret"
    with local_postgres() as server:
        server.execute(*(statement.format(password=password) for statement in README_SQL))
        pgpass = tmp_path_factory.mktemp("postgres") / "pgpass"
        pgpass.write_text(f"{server.host}:{server.port}:optuna:optuna:{password}\n")
        pgpass.chmod(0o600)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PGPASSFILE", str(pgpass))
            yield f"postgresql+psycopg://optuna@{server.host}:{server.port}/optuna"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study(
    backend: str, small_mnist: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sweep = tmp_path / "shared"
    storage = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    command = tiny_search(small_mnist, sweep, 4, "trainer.max_epochs=2", storage=storage)
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    workers = [_start(command, log) for log in logs]
    for worker, log in zip(workers, logs, strict=True):
        _finished(worker, log)

    study = load_study(sweep, storage)
    trials = counted(study.trials)
    assert len(trials) == 4
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert trial_dirs(sweep) == {str(t.number) for t in trials}
    params = {tuple(sorted(t.params.items())) for t in trials}
    assert len(params) == 4, "workers proposed the same parameters twice"
    ran = Counter(t.user_attrs["worker"] for t in trials)
    print(f"{backend}: trials per worker {dict(ran)}")
    assert set(ran) == {f"{HOST}:{worker.pid}" for worker in workers}, f"one worker ran them all: {ran}"

    best = json.loads((sweep / "best.json").read_text())
    assert best["trial"] == str(study.best_trial.number)
    rows = summary_rows(sweep)
    assert len(rows) == 4 and rows[0]["trial"] == best["trial"]


HEARTBEAT_S, GRACE_S = 1, 3


def _process_state(pid: int) -> str:
    """The one-letter state in ``/proc/<pid>/stat``: ``T`` for a stopped process."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _kill_when_frozen(study_name: str, storage: str, victim: subprocess.Popen) -> tuple[int, datetime]:
    """Wait for ``victim`` to freeze itself mid-trial (``FREEZE``), then kill it; return its
    trial's number and the last time it was seen running.

    Workers on one host find each other's dead trials by process id straight away. So that
    only the storage heartbeat can reveal this one, the trial's ``worker`` is first set to
    another host's name, as a worker on another machine would have left it.
    """
    deadline = time.monotonic() + 180
    seen_running = datetime.now()
    while _process_state(victim.pid) != "T":
        assert victim.poll() is None, f"the worker exited with {victim.returncode} before freezing"
        assert time.monotonic() < deadline, "the worker did not freeze within 180 s"
        seen_running = datetime.now()
        time.sleep(0.05)
    rdb = RDBStorage(storage)
    study = optuna.load_study(study_name=study_name, storage=rdb)
    (trial,) = [
        t
        for t in study.get_trials(states=(TrialState.RUNNING,))
        if t.user_attrs.get("worker") == f"{HOST}:{victim.pid}"
    ]
    rdb.set_trial_user_attr(trial_id(rdb, study_name, trial.number), "worker", "another-host:1")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    return trial.number, seen_running


FREEZE = [
    "+callbacks.kill._target_=faults.KillAt",
    "+callbacks.kill.signal=SIGSTOP",
    "+callbacks.kill.epoch=0",
    "+callbacks.kill.batch=0",
]


def test_trial_of_a_worker_that_died_elsewhere_is_retried_after_the_grace_period(
    small_mnist: Path, tmp_path: Path, postgres_url: str
) -> None:
    sweep = tmp_path / "heartbeat"
    command = tiny_search(
        small_mnist,
        sweep,
        4,
        # Long enough that the survivor's three trials outlast the grace: at 2 epochs a fast
        # machine ran them in 4 s, before the dead trial was due for a retry.
        "trainer.max_epochs=6",
        "hydra.sweeper.study_name=heartbeat",
        f"hydra.sweeper.heartbeat_interval={HEARTBEAT_S}",
        f"hydra.sweeper.grace_period={GRACE_S}",
        storage=postgres_url,
    )
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    workers = [_start([*command, *FREEZE], logs[0]), _start(command, logs[1])]
    survivor, log = workers[1], logs[1]
    try:
        # Its first trial leaves three of four to the survivor: time enough to outlast the grace.
        number, last_alive = _kill_when_frozen("heartbeat", postgres_url, workers[0])
        _finished(survivor, log)
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)

    study = load_study(sweep, postgres_url, name="heartbeat")
    dead = study.trials[number]
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == number]
    ran = Counter(t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs)
    waited = retry.datetime_start - last_alive
    print(f"trial {number} killed, retried as {retry.number} {waited} after it froze; {ran}")
    assert dead.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["worker"] == f"{HOST}:{survivor.pid}"
    assert retry.datetime_start >= last_alive + timedelta(seconds=GRACE_S - HEARTBEAT_S)
    trials = counted(study.trials)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    rows = {r["trial"]: r for r in summary_rows(sweep)}
    assert rows[str(number)]["state"] == "interrupted"
    assert rows[str(retry.number)]["note"] == f"retry of #{number}"


def _search(storage: optuna.storages.BaseStorage, n_trials: int, seed: int = 7) -> OptunaSearch:
    return OptunaSearch(
        sampler={"_target_": "optuna.samplers.TPESampler", "seed": seed, "n_startup_trials": 3},
        study_name="repro",
        storage=storage,
        n_trials=n_trials,
        params=SEARCH,
    )


def _objective(params: dict) -> float:
    return -abs(params["optimizer.lr"] - 3e-3) * 100 + params["model.net.width"] / 64


def _propose(search: OptunaSearch, stop_after: int | None = None) -> list[dict]:
    """Run a fake search; with ``stop_after``, leave the next trial running and dead."""
    study, storage = search.open_study()
    space = parse_search_space(search.params, [])
    while trials := search._ask(study, storage, space):
        (trial,) = trials
        if stop_after is not None and len(counted(study.trials)) > stop_after:
            dead = subprocess.run(
                [sys.executable, "-c", "import os; print(os.getpid())"],
                capture_output=True,
                text=True,
                check=True,
            )
            trial.set_user_attr("worker", f"{HOST}:{dead.stdout.strip()}")
            break
        study.tell(trial, _objective(trial.params))
    return [t.params for t in counted(study.trials) if t.state == TrialState.COMPLETE]


def test_same_seed_proposes_the_same_trials_even_when_resumed() -> None:
    first = _propose(_search(InMemoryStorage(), 8))
    assert first == _propose(_search(InMemoryStorage(), 8))
    assert first != _propose(_search(InMemoryStorage(), 8, seed=8))

    storage = InMemoryStorage()
    _propose(_search(storage, 8), stop_after=4)
    resumed = _propose(_search(storage, 8))
    assert resumed == first


def test_search_space_follows_hydra_override_grammar() -> None:
    space = parse_search_space(
        {"a": "tag(log, interval(1e-4, 1e-2))", "b": "choice(64, 128)", "c": "range(1, 10, 3)"},
        ["d=int(interval(0, 4))", "b=choice(8, 16)", "data.data_dir=/x", "+extra=1"],
    )
    a, b, c, d = (space.distributions[k] for k in "abcd")
    assert (a.low, a.high, a.log) == (1e-4, 1e-2, True)
    assert b.choices == (8, 16)
    assert (c.low, c.high, c.step) == (1, 7, 3)
    assert isinstance(d, optuna.distributions.IntDistribution) and (d.low, d.high) == (0, 4)
    assert space.fixed == ["data.data_dir=/x", "+extra=1"]
    assert space.overrides({"a": 1e-3, "b": 8, "c": 4, "d": 2}) == [
        "data.data_dir=/x",
        "+extra=1",
        "a=0.001",
        "c=4",
        "d=2",
        "b=8",
    ]
