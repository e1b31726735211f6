# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Training that survives interruption: one training-state checkpoint, written atomically, and ``--resume true``.

``TrainingCheckpoint`` (a trainer handler) writes ``<ckpt_dir>/training_state.pt`` every ``save_interval`` epochs,
when training completes, and when the process gets SIGTERM or SIGINT (Ctrl-C): it lets the running iteration finish
(at the last iteration of an epoch it lets the epoch finish, validation included, so that no epoch-end handler is
skipped), writes, and stops the trainer; ``exit_if_interrupted`` (the config's next ``run`` step) then ends the
command with status 128 + signal (130 for Ctrl-C, 143 for SIGTERM). A second signal stops at once.

With ``resume=True`` the handler reads that file at ``Events.STARTED`` (``weights_only=True``) and restores

- the network, optimiser, LR scheduler and, under AMP, the gradient scaler (``engine.scaler``);
- the trainer's epoch and iteration (the configured ``max_epochs`` is kept, so a run can be extended);
- the validator's best metric and the list of MONAI ``CheckpointSaver``'s key-metric tracker (so ``model.pt`` is only
  replaced by a better model than the one before the interruption);
- the state of every other attached handler with ``state_dict``/``load_state_dict``, and the history of
  ``TrainingCurvePlotter`` (its curve and CSV continue);
- the random state: Python's, NumPy's, torch's (CPU and CUDA), and every MONAI random transform's own ``R`` in the
  training dataset's pipeline;
- the data position: with :class:`ResumableDataLoader`, the random state at which the live data iterator was made
  and how many batches it had given; on resume the loader remakes that iterator and skips those batches (their
  augmentation is recomputed, the network does not see them). An interrupted epoch thus continues with exactly the
  batches it would have had.

With ``num_workers=0``, or workers that are not persistent, the resumed run is the uninterrupted run, bit for bit on
CPU (``tests/bundles/test_resume.py``). Persistent workers keep their augmentation random state inside the worker
processes, where no checkpoint can reach it: the resumed run then draws other augmentations (a warning says so).

The file is a dict of state dicts (``network``, ``optimizer``, ... plus ``format``/``meta``), the layout of ignite's
``Checkpoint``, so MONAI's ``CheckpointLoader(load_dict={"network": net})`` also reads the weights from it. The final
weights stay ``model.pt``, a plain state dict. A file that cannot be read, is not a training state, or holds another
network ends the command with an :class:`~xlstm_bundle_tools.errors.InvalidInputError` naming it, before anything is
written. Under DDP every rank restores the same file, only rank 0 writes, and a signal on any rank stops all of them
at the same iteration.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import os
import pickle
import random
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.data import DataLoader
from monai.data.utils import worker_init_fn as monai_worker_init_fn
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable, Transform

from .checks import flag
from .errors import InvalidInputError
from .io import atomic_write

__all__ = ["FORMAT", "ResumableDataLoader", "TrainingCheckpoint", "exit_if_interrupted", "get_rng_state",
           "set_rng_state"]

FORMAT = "xlstm-seg training state"
VERSION = 1
SIGNALS = (signal.SIGINT, signal.SIGTERM)
logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ random state
def _transform_random_states(root: Any) -> list[np.random.RandomState]:
    """Every MONAI random transform's ``R`` reachable from ``root`` (a dataset), in a fixed order, each once.

    Walks the objects ``monai.data.utils.set_rnd`` seeds (datasets, Compose, transforms and the random transforms
    held inside dictionary transforms, such as ``RandAffined.rand_affine``); tensors and other objects are skipped.
    """
    states: list[np.random.RandomState] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                visit(item)
        elif isinstance(obj, (Transform, Randomizable, torch.utils.data.Dataset)) and id(obj) not in seen:
            seen.add(id(obj))
            if isinstance(obj, Randomizable) and id(obj.R) not in seen:
                seen.add(id(obj.R))
                states.append(obj.R)
            for key, value in vars(obj).items():
                if not key.startswith("__"):
                    visit(value)

    visit(root)
    return states


def _numpy_state(state: tuple) -> dict:
    name, keys, pos, has_gauss, cached = state
    # weights_only=True refuses NumPy arrays: the MT19937 key goes as an int64 tensor
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_tuple(state: Mapping) -> tuple:
    return (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
            state["cached_gaussian"])


def get_rng_state(dataset: Any = None) -> dict:
    """Python's, NumPy's and torch's random states, and those of the random transforms of ``dataset``, as a dict of
    tensors and numbers that ``torch.load(..., weights_only=True)`` accepts."""
    version, internal, gauss = random.getstate()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": _numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "transforms": [_numpy_state(r.get_state()) for r in _transform_random_states(dataset)]
        if dataset is not None else [],
    }
    return state


def set_rng_state(state: Mapping, dataset: Any = None, where: str = "training state") -> None:
    """Restore what :func:`get_rng_state` returned (the transforms' states only when ``dataset`` is given)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if dataset is not None:
        randoms = _transform_random_states(dataset)
        if len(randoms) != len(state["transforms"]):
            raise InvalidInputError(
                f"{where}: the training pipeline has {len(randoms)} random transforms, the checkpoint "
                f"{len(state['transforms'])}; it was written with other transforms, and resuming needs the same ones.")
        for r, saved in zip(randoms, state["transforms"]):
            r.set_state(_numpy_tuple(saved))


# ------------------------------------------------------------------------------------------------ data position
_main_process_exiting = None  # a multiprocessing.Event, set by an atexit hook of the main process


def _exiting_event():
    global _main_process_exiting
    if _main_process_exiting is None:
        _main_process_exiting = multiprocessing.Event()
        # registered after multiprocessing's own exit hook, so it runs before that hook terminates the workers
        atexit.register(_main_process_exiting.set)
    return _main_process_exiting


def _quiet_worker_init(worker_id: int, main_exiting) -> None:
    """MONAI's worker seeding, and workers that leave SIGINT/SIGTERM to the main process.

    Ctrl-C reaches the whole process group and schedulers send SIGTERM to every process of a job: a worker that died
    of it would make the main process fail on its next batch instead of finishing the iteration and writing its state.
    But when the main process exits with its workers still running (an error in the middle of an epoch),
    multiprocessing's exit hook stops them with one SIGTERM and waits for them: then the worker must die, or the
    command never ends. ``main_exiting`` tells the two apart.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, functools.partial(_worker_sigterm, main_exiting))
    monai_worker_init_fn(worker_id)


def _worker_sigterm(main_exiting, signum: int, frame: Any) -> None:
    if main_exiting.is_set():
        # exit status 0, not death by the signal: torch's SIGCHLD handler in the main process would report a worker
        # "killed by signal: Terminated" after the real error
        os._exit(0)


class _CountingIterator:
    def __init__(self, iterator: Iterator, position: dict) -> None:
        self._iterator, self._position = iterator, position

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        batch = next(self._iterator)
        self._position["consumed"] += 1
        return batch

    def __len__(self) -> int:
        return len(self._iterator)


class ResumableDataLoader(DataLoader):
    """``monai.data.DataLoader`` that can continue an interrupted pass over its data exactly; same arguments.

    It records the random state from which each iterator is made (the sampler's shuffle and the workers' seeds come
    from torch's random state, the augmentation of ``num_workers=0`` from the transforms' own states) and the number
    of batches the iterator has given. :meth:`load_state_dict` makes the next iterator start from that state and skip
    that many batches, after which the random state is what it was before (the rest of the checkpoint set it).
    Workers ignore SIGINT and SIGTERM (the main process stops them).
    """

    def __init__(self, dataset, num_workers: int = 0, **kwargs) -> None:
        if num_workers > 0:
            kwargs.setdefault("worker_init_fn", functools.partial(_quiet_worker_init, main_exiting=_exiting_event()))
        super().__init__(dataset, num_workers=num_workers, **kwargs)
        self._position: dict = {"start": None, "consumed": 0}
        self._pending: dict | None = None

    def __iter__(self) -> _CountingIterator:
        pending, self._pending = self._pending, None
        if pending is not None:
            now = get_rng_state(self.dataset)
            set_rng_state(pending["start"], self.dataset)
        start = get_rng_state(self.dataset)
        iterator = super().__iter__()
        self._position = {"start": start, "consumed": 0}
        counting = _CountingIterator(iterator, self._position)
        if pending is not None:
            for _ in range(pending["consumed"]):
                next(counting)
            set_rng_state(now, self.dataset)
        return counting

    def state_dict(self) -> dict:
        """Where the live iterator stands; an exhausted (or no) iterator needs nothing: the next one starts afresh."""
        consumed = self._position["consumed"]
        if self._position["start"] is None or consumed == 0 or consumed >= len(self):
            return {"consumed": 0, "batches": len(self)}
        return {"start": self._position["start"], "consumed": consumed, "batches": len(self)}

    def load_state_dict(self, state: Mapping) -> None:
        if state["batches"] != len(self):
            raise InvalidInputError(
                f"training state: the data loader gave {state['batches']} batches a pass when it was written, this "
                f"one gives {len(self)}; resuming needs the same training data and batch size.")
        self._pending = dict(state) if state["consumed"] else None
        if self._pending and self.num_workers > 0 and self.persistent_workers:
            logger.warning("resuming with persistent data-loader workers: their augmentation random state lived in the "
                           "worker processes and is lost, so the resumed run draws other augmentations (exact resume "
                           "needs num_workers 0 or persistent_workers false)")


# ------------------------------------------------------------------------------------------------ handlers' state
def attached_handlers(engine: Engine) -> list[Any]:
    """The objects whose methods (or themselves) are registered on ``engine``, in registration order, each once."""
    found, seen = [], set()
    for entries in list(engine._event_handlers.values()):
        for func, _, _ in entries:
            parent = getattr(func, "_parent", None)  # ignite wraps filtered handlers (every=N) and keeps a weakref
            if parent is not None:
                func = parent() or func
            obj = getattr(func, "__self__", func)
            if id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
    return found


class _ValidatorState:
    """The validator's best metric and the key-metric lists of the ``CheckpointSaver``s attached to it."""

    def __init__(self, validator: Engine) -> None:
        self.validator = validator
        self.savers = [h._key_metric_checkpoint for h in attached_handlers(validator)
                       if isinstance(h, CheckpointSaver) and h._key_metric_checkpoint is not None]

    def state_dict(self) -> dict:
        state = self.validator.state
        return {"best_metric": float(getattr(state, "best_metric", -1)),
                "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
                "key_metric_savers": [[(float(p), str(f)) for p, f in saver.state_dict()["_saved"]]
                                      for saver in self.savers]}

    def load_state_dict(self, state: Mapping) -> None:
        self.validator.state.best_metric = state["best_metric"]
        self.validator.state.best_metric_epoch = state["best_metric_epoch"]
        if not self.savers and _rank() > 0:
            return  # under DDP only rank 0's validator has the savers (multi_gpu_train.json), and it wrote the file
        if len(state["key_metric_savers"]) != len(self.savers):
            raise InvalidInputError(f"training state: it tracks {len(state['key_metric_savers'])} key-metric "
                                    f"checkpoint savers, this run has {len(self.savers)}")
        for saver, saved in zip(self.savers, state["key_metric_savers"]):
            saver.load_state_dict({"_saved": [tuple(item) for item in saved]})


class _HistoryState:
    """The lists a handler keeps (``TrainingCurvePlotter``'s epochs, losses, metrics), saved as they are."""

    def __init__(self, handler: Any, names: tuple[str, ...]) -> None:
        self.handler, self.names = handler, names

    def state_dict(self) -> dict:
        return {name: list(getattr(self.handler, name)) if isinstance(getattr(self.handler, name), list)
                else getattr(self.handler, name) for name in self.names}

    def load_state_dict(self, state: Mapping) -> None:
        for name in self.names:
            setattr(self.handler, name, list(state[name]) if isinstance(state[name], list) else state[name])


_HISTORIES = {"TrainingCurvePlotter": ("epochs", "losses", "metrics", "_epoch_losses", "metric_label")}


def _handler_states(engine: Engine, prefix: str, skip: Any) -> dict[str, Any]:
    states, counts = {}, {}
    for handler in attached_handlers(engine):
        name = type(handler).__name__
        if handler is skip or isinstance(handler, (Engine, CheckpointSaver)):
            continue
        if name in _HISTORIES:
            adapter = _HistoryState(handler, _HISTORIES[name])
        elif callable(getattr(handler, "state_dict", None)) and callable(getattr(handler, "load_state_dict", None)):
            adapter = handler
        else:
            continue
        index = counts[name] = counts.get(name, -1) + 1
        states[f"{prefix}:{name}:{index}"] = adapter
    return states


def _unwrap(obj: Any) -> Any:
    return obj.module if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else obj


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def _rank() -> int:
    return torch.distributed.get_rank() if _distributed() else 0


# ------------------------------------------------------------------------------------------------ the handler
class TrainingCheckpoint:
    """Trainer handler: write the training state atomically, and restore it with ``resume=True``.

    Args:
        save_dir: folder of ``filename`` (the bundle's ``ckpt_dir``).
        save_dict: the objects with state dicts the trainer does not know, e.g. ``{"network": net, "optimizer": opt,
            "lr_scheduler": sched}``. The trainer, its gradient scaler and data loader, the validator, the
            handlers' states and the random state are added by the handler.
        validator: the evaluator that validates during training (its best metric and key-metric savers are saved).
        save_interval: write every N epochs (0: only at completion and interruption).
        resume: restore the state from ``save_dir/filename`` when training starts.
        filename: the training state's file name.
    """

    def __init__(self, save_dir: str, save_dict: Mapping[str, Any], validator: Engine | None = None,
                 save_interval: int = 10, resume: bool = False, filename: str = "training_state.pt") -> None:
        if "trainer" in save_dict or "rng" in save_dict:
            raise ValueError("save_dict: 'trainer' and 'rng' are added by TrainingCheckpoint itself")
        if save_interval < 0:
            raise ValueError(f"save_interval must be >= 0; got {save_interval}")
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.validator = validator
        self.save_interval = int(save_interval)
        self.resume = flag(resume, "resume")
        self.signal: int | None = None
        self._saved_iteration: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._handler_pid = os.getpid()
        self._objects: dict[str, Any] | None = None

    # -- ignite
    def attach(self, engine: Engine) -> None:
        self.engine = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        engine.add_event_handler(Events.TERMINATE, self._restore_signal_handlers)

    def objects(self, engine: Engine) -> dict[str, Any]:
        """Everything the training state holds, by key (found once the handlers are attached)."""
        if self._objects is None:
            objects = dict(self.save_dict)
            scaler = getattr(engine, "scaler", None)
            if scaler is not None:
                objects["scaler"] = scaler
            objects["trainer"] = engine
            if self.validator is not None:
                objects["validator"] = _ValidatorState(self.validator)
                objects.update(_handler_states(self.validator, "validator_handler", self))
            objects.update(_handler_states(engine, "trainer_handler", self))
            loader = getattr(engine, "data_loader", None)
            if isinstance(loader, ResumableDataLoader):
                objects["data"] = loader
            self._objects = objects
        return self._objects

    def _started(self, engine: Engine) -> None:
        self._objects = None  # the scaler is made by Trainer.run()
        if self.resume:
            self.load(engine)
        elif self.path.is_file():
            logger.warning(f"{self.path} is from an earlier run: this run starts afresh and replaces it at its first "
                           "save (add --resume true to continue that run instead)")
        self._install_signal_handlers()

    def _iteration_completed(self, engine: Engine) -> None:
        if not self._stop_requested():
            return
        if engine.state.epoch_length and engine.state.iteration % engine.state.epoch_length == 0:
            return  # the epoch's last iteration: stop after its epoch-end handlers (validation, scheduler, curve)
        self._stop(engine)

    def _epoch_completed(self, engine: Engine) -> None:
        if self._stop_requested():
            self._stop(engine)
        elif self.save_interval and engine.state.epoch % self.save_interval == 0:
            self.save(engine, f"every {self.save_interval} epochs")

    def _completed(self, engine: Engine) -> None:
        if self._saved_iteration != engine.state.iteration:
            self.save(engine, "training completed")
        self._restore_signal_handlers()

    @staticmethod
    def _dataset(engine: Engine) -> Any:
        loader = getattr(engine, "data_loader", None)
        return getattr(loader, "dataset", None)

    # -- writing
    def state(self, engine: Engine) -> dict:
        """The training state as a dict that ``torch.load(weights_only=True)`` reads back."""
        network = _unwrap(self.save_dict.get("network"))
        state = {k: _unwrap(o).state_dict() for k, o in self.objects(engine).items()}
        state["rng"] = get_rng_state(self._dataset(engine))
        state["format"] = FORMAT
        state["meta"] = {"version": VERSION, "epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration),
                         "epoch_length": int(engine.state.epoch_length or 0),
                         "network": type(network).__name__ if network is not None else "",
                         "torch": str(torch.__version__)}
        return state

    def save(self, engine: Engine, reason: str) -> None:
        state = self.state(engine)
        if _rank() == 0:
            atomic_write(self.path, lambda tmp: torch.save(state, tmp))
            logger.info(f"wrote the training state ({reason}, epoch {engine.state.epoch}, iteration "
                        f"{engine.state.iteration}): {self.path}")
        if _distributed():
            torch.distributed.barrier()
        self._saved_iteration = engine.state.iteration

    # -- reading
    def _read(self) -> dict:
        path = self.path
        if not path.is_file():
            raise InvalidInputError(
                f"{path}: no training state to resume from (--resume true). Training writes it every "
                f"{self.save_interval or 'N'} epochs, at the end and when interrupted; start without --resume, or "
                "point --ckpt_dir at the folder of the run to continue.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            reason = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line), str(err))
            raise InvalidInputError(
                f"{path}: not a training state: it holds Python objects that loading with weights_only=True refuses "
                f"({reason[:300]}). Nothing was written; point --ckpt_dir at a folder written by this bundle's "
                "training, or start without --resume.") from err
        except Exception as err:
            raise InvalidInputError(
                f"{path}: cannot be read as a training state ({type(err).__name__}: {str(err).splitlines()[0]}); the "
                "file is truncated or damaged (training writes it atomically, so a copy or a full disk did this). "
                "Nothing was written; restore the file, or start without --resume.") from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
            raise InvalidInputError(
                f"{path}: not a training state written by xlstm_bundle_tools.TrainingCheckpoint (it holds {keys}); "
                "model.pt holds final weights only and cannot resume training.")
        if state["meta"].get("version") != VERSION:
            raise InvalidInputError(f"{path}: training-state version {state['meta'].get('version')}; this code "
                                    f"reads version {VERSION}")
        return state

    def _check_network(self, state: dict) -> None:
        network = _unwrap(self.save_dict["network"])
        expected = network.state_dict()
        saved = state["network"]
        missing = [k for k in expected if k not in saved]
        unexpected = [k for k in saved if k not in expected]
        reshaped = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                    if k in saved and tuple(saved[k].shape) != tuple(v.shape)]
        if missing or unexpected or reshaped:
            parts = [f"{len(missing)} of this network's tensors missing (e.g. {missing[:2]})" if missing else "",
                     f"{len(unexpected)} unknown to it (e.g. {unexpected[:2]})" if unexpected else "",
                     f"{len(reshaped)} with other shapes (checkpoint vs network, e.g. {reshaped[:2]})" if reshaped
                     else ""]
            saved, built = state["meta"].get("network") or "?", type(network).__name__
            what = f"another network ({saved}; this run builds {built})" if saved != built else \
                f"a {saved} of another configuration (other widths, depths or channels)"
            raise InvalidInputError(
                f"{self.path}: the training state of {what}: " + "; ".join(p for p in parts if p) + ". Point "
                "--ckpt_dir at this bundle's own run, or start without --resume. Nothing was loaded or written.")

    def load(self, engine: Engine) -> None:
        """Restore everything from the training state; raises InvalidInputError (nothing changed) when it does not
        fit."""
        state = self._read()
        if "network" in self.save_dict:
            self._check_network(state)
        meta = state["meta"]
        if meta["epoch_length"] and engine.state.epoch_length and meta["epoch_length"] != engine.state.epoch_length:
            raise InvalidInputError(
                f"{self.path}: written with {meta['epoch_length']} iterations per epoch, this run has "
                f"{engine.state.epoch_length} (another dataset, batch size or iterations_per_epoch); resuming needs "
                "the same.")
        max_epochs = engine.state.max_epochs
        if max_epochs is not None and meta["epoch"] > max_epochs:
            raise InvalidInputError(f"{self.path}: already at epoch {meta['epoch']}, beyond this run's {max_epochs} "
                                    "epochs; raise --epochs to train further.")
        objects = self.objects(engine)
        absent = [k for k in objects if k not in state and k != "scaler"]
        if absent:
            raise InvalidInputError(f"{self.path}: has no {absent}; it was written by a run with other handlers or "
                                    "objects, and resuming needs the same configuration.")
        to_load = {k: o for k, o in objects.items() if k in state}
        if "scaler" in state and "scaler" not in objects:
            logger.warning("the training state has an AMP gradient scaler and this run has amp off: it is ignored")
        elif "scaler" in objects and "scaler" not in state:
            logger.warning("this run uses AMP and the training state has no gradient scaler: it starts afresh")
        try:
            Checkpoint.load_objects(to_load=to_load, checkpoint=state)
        except InvalidInputError:
            raise
        except (KeyError, ValueError, RuntimeError) as err:
            raise InvalidInputError(f"{self.path}: does not fit this run ({type(err).__name__}: {err}); it was "
                                    "written with another configuration.") from err
        engine.state.max_epochs = max_epochs  # the configured number of epochs, as MONAI's CheckpointLoader does
        set_rng_state(state["rng"], self._dataset(engine), str(self.path))
        self._saved_iteration = engine.state.iteration
        logger.info(f"resumed from {self.path}: epoch {engine.state.epoch}, iteration {engine.state.iteration} of "
                    f"{(max_epochs or 0) * (engine.state.epoch_length or 0)}")

    # -- signals
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.signal = None
        self._handler_pid = os.getpid()
        for signum in SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self, *_: Any) -> None:
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._handler_pid:
            # a forked child (a DataLoader worker) inherits this handler; it must die as it would without it, or the
            # trainer's shutdown, which terminates its workers with SIGTERM and joins them, waits forever
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        name = signal.Signals(signum).name
        if self.signal is not None:  # the second one: stop now, as without this handler
            self._restore_signal_handlers()
            sys.stderr.write(f"{name} again: stopping at once (the training state is not written)\n")
            signal.raise_signal(signum)
            return
        self.signal = signum
        sys.stderr.write(f"{name}: finishing the current iteration, then writing the training state to {self.path} "
                         f"(send {name} again to stop at once)\n")

    def _stop_requested(self) -> bool:
        local = self.signal or 0
        if _distributed():  # every rank stops at the same iteration, whichever got the signal
            device = torch.device("cuda", torch.cuda.current_device()) \
                if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
            flag = torch.tensor([local], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            local = int(flag.item())
            if local and self.signal is None:
                self.signal = local
        return bool(local)

    def _stop(self, engine: Engine) -> None:
        self.save(engine, f"{signal.Signals(self.signal).name}")
        engine.state.interrupted_by = self.signal
        engine.terminate(skip_completed=True)  # COMPLETED would close tracking runs and log final artifacts


def exit_if_interrupted(engine: Engine) -> None:
    """After ``trainer.run()``: end the command with 128 + signal when a signal stopped the training."""
    signum = getattr(engine.state, "interrupted_by", None)
    if not signum:
        return
    for handler in attached_handlers(engine):
        if isinstance(handler, TrainingCheckpoint):
            handler._restore_signal_handlers()
            where = handler.path
            break
    else:
        where = "the checkpoint folder"
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    name = signal.Signals(signum).name
    sys.stderr.write(f"Stopped by {name} at epoch {engine.state.epoch}, iteration {engine.state.iteration}; the "
                     f"training state is in {where}. Run the same command with --resume true to continue.\n")
    sys.stderr.flush()
    raise SystemExit(128 + signum)
