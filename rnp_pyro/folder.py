"""A run folder's files: their names, the lock of the one fit that writes it,
checkpoints, metrics rows and the log. Nothing here knows what a model is.

A run folder holds ``config.json`` (written when training starts), ``checkpoint.pt``
(replaced atomically after every epoch and every few hundred steps),
``metrics.csv`` (a row per epoch, on disk before its checkpoint), ``fit.log`` (the
lines a fit logs), ``tensorboard/``, the end-of-training figures, and what the
commands on a trained run write: ``evaluation.json``, ``ppc/`` and ``figures/``.
Whatever moment a run stops at, the folder holds a complete, readable state.
Training and its report write here; :mod:`rnp_pyro.run` builds and judges runs from
what is here.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import pickle
import shutil
from importlib import metadata
from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError

log = logging.getLogger("rnp_pyro")

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
LOG_FILE = "fit.log"  # every line fit logs, also without a terminal
TENSORBOARD_DIR = "tensorboard"
RECONSTRUCTIONS_FILE = "reconstructions.png"  # the end-of-training figures
SAMPLES_FILE = "samples.png"
EVALUATION_FILE = "evaluation.json"  # what ``evaluate_run`` writes
PER_IMAGE_FILE = "evaluation_per_image.csv"
PPC_DIR = "ppc"  # what ``ppc_run`` writes
FIGURES_DIR = "figures"  # what ``figures_run`` writes
SAMPLES_DIR = "samples"  # what ``sample_run`` writes
RECONSTRUCTIONS_DIR = "reconstructions"  # what ``reconstruct_run`` writes
LOCK_FILE = "fit.lock"  # held by the one fit writing the folder
PARTIAL_SUFFIX = ".partial"  # a checkpoint being written
RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, CHECKPOINT_FILE + PARTIAL_SUFFIX, METRICS_FILE,
             LOG_FILE, TENSORBOARD_DIR, RECONSTRUCTIONS_FILE, SAMPLES_FILE, EVALUATION_FILE,
             PER_IMAGE_FILE, PPC_DIR, FIGURES_DIR, SAMPLES_DIR, RECONSTRUCTIONS_DIR, LOCK_FILE)

# the ELBO in nats per image, of the training steps since the last row and of the test set
METRICS_COLUMNS = ("epoch", "step", "train_elbo", "test_elbo", "test_mse", "lr", "skipped_steps",
                   "seconds")
_COUNT_COLUMNS = ("epoch", "step", "skipped_steps")
_CHECKPOINT_KEYS = ("model", "guide", "optimizer", "scheduler", "epoch", "step", "epoch_step",
                    "skipped_steps", "seconds", "seed", "rng", "config")


def library_version() -> str:
    try:
        return metadata.version("rnp-pyro")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------- the config
def write_config(run_dir: Path, config) -> None:
    """``config.json``: the run's settings (a :class:`rnp_pyro.config.RunConfig`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)


def is_run(run_dir: Path) -> bool:
    """Whether a folder holds a run: a config.json that is an object of settings."""
    try:
        settings = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and ("model" in settings or "taus" in settings)


# ---------------------------------------------------------------------------- the lock
@contextlib.contextmanager
def writing(run_dir: str | Path, *, overwrite: bool = False):
    """Hold ``run_dir`` as the one fit that writes it, for the ``with`` block.

    The folder must be new, empty, or a run's (its config.json readable); a run's is
    emptied of the run's own files first when ``overwrite``. Files a user put there are
    never touched. A lock file refuses a second fit while this one lives; a lock left by
    a process that is gone is taken over. A checkpoint half written by a killed run is
    removed.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a folder; choose a folder")
    names = {path.name for path in run_dir.iterdir()} if run_dir.is_dir() else set()
    names -= {LOCK_FILE, CHECKPOINT_FILE + PARTIAL_SUFFIX}  # what a stopped fit may leave
    if names and not is_run(run_dir):
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError(f"{run_dir} holds files that are not a run's ({shown}); a run is "
                          f"written into a new or empty folder: choose another --out")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = run_dir / LOCK_FILE
        descriptor = _take_lock(lock)
    except OSError as err:
        raise ConfigError(f"cannot write the run folder {run_dir}: {err.strerror or err}; "
                          f"choose another --out") from err
    try:
        if overwrite:
            for name in RUN_FILES:
                if name != LOCK_FILE:
                    _remove(run_dir / name)
        _remove(run_dir / (CHECKPOINT_FILE + PARTIAL_SUFFIX))
        yield run_dir
    finally:
        os.close(descriptor)
        lock.unlink(missing_ok=True)
        if created and not any(run_dir.iterdir()):  # a fit that failed before writing
            run_dir.rmdir()


def _take_lock(lock: Path) -> int:
    """Create the lock file holding this process's id, or raise if a live process has it."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _alive(holder):
                raise ConfigError(f"another fit (process {holder}) is writing {lock.parent}; wait "
                                  f"for it to end, or choose another --out") from None
            lock.unlink(missing_ok=True)  # left by a process that is gone
            continue
        os.write(descriptor, str(os.getpid()).encode())
        return descriptor
    raise ConfigError(f"cannot take the lock {lock}; remove it if no fit is running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(run_dir: str | Path, state: dict) -> None:
    """Write to a temporary file beside the checkpoint, then rename: a reader never sees
    half a file. When the disk cannot take it, the temporary file is removed and a
    CheckpointError names the space needed and the last good checkpoint."""
    path = Path(run_dir) / CHECKPOINT_FILE
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    size = buffer.getbuffer().nbytes
    try:
        if shutil.disk_usage(path.parent).free < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with open(partial, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise CheckpointError(_unwritten(path, size, err)) from err


def _unwritten(path: Path, size: int, err: OSError) -> str:
    """Why a checkpoint could not be written, and where the run can go on from."""
    free = shutil.disk_usage(path.parent).free
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or free < size:
        why = f"it needs {_megabytes(size)} and the disk has {_megabytes(free)} free"
    else:
        why = str(err.strerror or err)
    try:
        step = read_checkpoint(path.parent)["step"]
    except CheckpointError:
        return f"cannot write the checkpoint {path}: {why}; there is no checkpoint yet to resume"
    return (f"cannot write the checkpoint {path}: {why}; the last good checkpoint is {path} "
            f"(step {step}): make room, then run the same command with --resume")


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e5 else f"{count / 1e3:.1f} kB"


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_FILE).exists()


def checkpoint_to_resume(run_dir: Path, *, resume: bool, overwrite: bool) -> dict | None:
    """The checkpoint a fit into ``run_dir`` resumes (None: a new run), refusing to
    replace a run that was not asked to be replaced."""
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: "
                          "give one of them")
    if not resume:
        if has_checkpoint(run_dir) and not overwrite:
            raise CheckpointError(f"{run_dir} already holds a run ({CHECKPOINT_FILE}); pass "
                                  f"--resume to continue it, --overwrite to replace it, or "
                                  f"choose another --out")
        return None
    if not has_checkpoint(run_dir):
        log.info(f"no checkpoint in {run_dir} yet: starting the run afresh")
        return None
    return read_checkpoint(run_dir)


def read_checkpoint(run_dir: str | Path) -> dict:
    """The contents of a run folder's checkpoint on the CPU, or a CheckpointError saying
    what is wrong."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one with `rnp-pyro fit`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file, with long texts
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
            raise CheckpointError(f"{path} holds objects other than tensors and numbers, which "
                                  f"could run code when loaded; rnp-pyro does not load it: use "
                                  f"a checkpoint that rnp-pyro wrote") from err
        raise CheckpointError(f"cannot read checkpoint {path}: the file is damaged "
                              f"({type(err).__name__}); delete it and train again") from err
    missing = [key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not an rnp-pyro checkpoint "
                              f"(it lacks {', '.join(missing)})")
    return state


def load_weights(module: torch.nn.Module, weights: dict, what: str, source: str | Path) -> None:
    """``module.load_state_dict`` with a clear error when the shapes or names do not fit."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"the {what} weights in {source} do not fit the {what} built from "
                              f"its config; was it written by another version of rnp-pyro?"
                              ) from err


# ---------------------------------------------------------------------------- metrics
def read_metrics(run_dir: str | Path, until: int | None = None) -> list[dict]:
    """The rows of a run's ``metrics.csv`` as numbers ([] when there is none), up to step
    ``until`` if given. A damaged row (a cut line, a stray edit) is reported and left out.
    Files written before the train ELBO had its sign give it the ELBO's."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as file:
        for number, row in enumerate(csv.DictReader(file), start=2):
            if "train_loss" in row:  # older files: the loss, -ELBO
                loss = row.pop("train_loss")
                row["train_elbo"] = str(-float(loss)) if _is_number(loss) else loss
            try:
                parsed = {key: int(row[key]) if key in _COUNT_COLUMNS else float(row[key])
                          for key in METRICS_COLUMNS}
            except (KeyError, TypeError, ValueError):
                log.warning(f"{path}, line {number}: a damaged row, left out")
                continue
            if until is None or parsed["step"] <= until:
                rows.append(parsed)
    return rows


def last_metrics(run_dir: str | Path, until: int | None = None) -> dict:
    """The last row of ``metrics.csv`` (up to step ``until``) as numbers ({} when none)."""
    rows = read_metrics(run_dir, until)
    return rows[-1] if rows else {}


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def start_metrics(run_dir: Path, keep_until: int | None) -> None:
    """metrics.csv with its header and, when resuming, the rows up to the checkpoint's step.

    Rows written after the last checkpoint (a run stopped between the two writes)
    are dropped, as the resumed run writes them again.
    """
    path = run_dir / METRICS_FILE
    rows = read_metrics(run_dir, until=keep_until) if keep_until is not None else []
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def append_metrics(run_dir: Path, row: dict) -> None:
    """One row, on disk before the checkpoint it belongs to is written."""
    with open(run_dir / METRICS_FILE, "a", newline="") as file:
        csv.DictWriter(file, METRICS_COLUMNS).writerow(row)
        file.flush()
        os.fsync(file.fileno())


def tensorboard_dir(run_dir: Path) -> Path:
    return run_dir / TENSORBOARD_DIR


# ---------------------------------------------------------------------------- the log
@contextlib.contextmanager
def logging_to(run_dir: Path):
    """Every line the package logs inside the block also goes to ``fit.log`` (appended, so
    a resumed run's lines follow the earlier ones)."""
    handler = logging.FileHandler(Path(run_dir) / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
