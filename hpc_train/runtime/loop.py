"""The step loop of one rank, and the state it needs to continue bit for bit after a restart."""

from __future__ import annotations

import copy
import itertools
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hpc_train.runtime.comm import CommBackend, OptimizerMaker
from hpc_train.runtime.early_stopping import EarlyStopping
from hpc_train.runtime.sampling import batches_per_epoch, shard_eval_loader, shard_train_loader
from hpc_train.runtime.state import capture_rng, derive_seed, restore_rng, seed_everything

log = logging.getLogger(__name__)

STATE_FORMAT = 1


@dataclass
class Progress:
    """Where training stands: `batch` batches of epoch `epoch` (0-based) are done."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    stopped_early: bool = False


@dataclass
class EpochTotals:
    """One rank's sums over an epoch; summed over ranks they give the epoch's metrics."""

    loss_sum: float = 0.0
    correct: float = 0.0
    labelled: float = 0.0  # samples that had class labels, the denominator of accuracy
    count: float = 0.0

    def as_tensor(self) -> torch.Tensor:
        """The four sums as float64, ready for one allreduce."""
        return torch.tensor([self.loss_sum, self.correct, self.labelled, self.count], dtype=torch.float64)

    @classmethod
    def from_list(cls, values: Any) -> EpochTotals:
        """From as_tensor().tolist() (or the tensor itself)."""
        loss_sum, correct, labelled, count = (float(v) for v in torch.as_tensor(values).tolist())
        return cls(loss_sum, correct, labelled, count)

    @property
    def mean_loss(self) -> float | None:
        """Sample-weighted mean loss, None when nothing was seen."""
        return self.loss_sum / self.count if self.count else None

    @property
    def accuracy(self) -> float | None:
        """Fraction of labelled samples classified right, None without class labels."""
        return self.correct / self.labelled if self.labelled else None


def autocast_context(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bfloat16 autocast on CPU, float16 on CUDA; nothing when mixed precision is off."""
    if not enabled:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


class TrainingLoop:
    """Model, optimizer, data order and counters of one rank; runs epochs and snapshots its state."""

    def __init__(
        self,
        *,
        comm: CommBackend,
        model: nn.Module,
        make_optimizer: OptimizerMaker,
        device: torch.device,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        train_loader: DataLoader[Any],
        val_loader: DataLoader[Any] | None,
        seed: int,
        early_stopping: EarlyStopping | None,
        accumulation_steps: int,
        mixed_precision: bool,
        compression: str,
        should_stop: Callable[[], bool] | None,
        meta: Mapping[str, Any],
        resume: Mapping[str, Any] | None,
        warm_start: Mapping[str, Any] | None = None,
    ) -> None:
        self.comm, self.raw_model, self.device, self.loss_fn = comm, model, device, loss_fn
        self.early_stopping, self.accumulation_steps = early_stopping, accumulation_steps
        self.mixed_precision, self.should_stop, self.meta = mixed_precision, should_stop, dict(meta)
        # GradScaler guards float16 gradients against underflow; bfloat16 on CPU has float32's range.
        self.scaler = comm.make_grad_scaler(device) if mixed_precision and device.type == "cuda" else None
        self.history: list[dict[str, Any]] = []
        self.progress = Progress()
        self._running = EpochTotals()
        self.samples_before = 0.0
        self._pending_rng: Mapping[str, Any] | None = None
        model_state, optimizer_state = self._load(resume) if resume is not None else (None, None)
        if resume is None and warm_start is not None:  # another run's weights; everything else afresh
            model_state, optimizer_state = warm_start["model"], warm_start.get("optimizer")
        if resume is None:
            seed_everything(derive_seed(seed, comm.rank))
        self.model, self.optimizer = comm.prepare(model, make_optimizer, model_state=model_state,
                                                  optimizer_state=optimizer_state, compression=compression,
                                                  accumulation_steps=accumulation_steps)
        self.loader, self.sampler = shard_train_loader(train_loader, world_size=comm.world_size, rank=comm.rank,
                                                       seed=seed)
        self.batch_size = int(self.loader.batch_size or 1)
        self.batches_per_epoch = batches_per_epoch(self.sampler, self.batch_size, self.loader.drop_last)
        self.val_loader = (shard_eval_loader(val_loader, world_size=comm.world_size, rank=comm.rank)
                           if val_loader is not None else None)

    # -- one epoch --------------------------------------------------------------------------------

    def run_epoch(self, on_step: Callable[[], None] | None = None) -> EpochTotals | None:
        """Train the rest of the current epoch; None when should_stop() fired (state kept for saving).

        `on_step()` runs on every rank after each optimizer step that does not stop training (the
        trainer checkpoints there when the interval counts steps).
        """
        progress, k, n = self.progress, self.accumulation_steps, self.batches_per_epoch
        self.sampler.set_epoch(progress.epoch)
        self.sampler.start = progress.batch * self.batch_size
        rng, self._pending_rng = self._pending_rng, None
        # Creating the iterator draws one int64 from torch's RNG: restore on the same side of it
        # as where the state was captured (epoch start: before; mid-epoch: after).
        if rng is not None and progress.batch == 0:
            restore_rng(rng)
        batches = iter(self.loader)
        if rng is not None and progress.batch > 0:
            restore_rng(rng)
        model, optimizer, scaler, comm, loss_fn = self.model, self.optimizer, self.scaler, self.comm, self.loss_fn
        totals = self._running
        self.samples_before = totals.count  # consumed before a mid-epoch restart, not timed now
        loss_sum = torch.tensor(totals.loss_sum, dtype=torch.float64, device=self.device)
        correct = torch.tensor(totals.correct, dtype=torch.float64, device=self.device)
        labelled, count = totals.labelled, totals.count
        model.train()
        for i, (inputs, targets) in enumerate(batches, start=progress.batch):
            inputs = inputs.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            window = i - i % k
            size = min(k, n - window)  # the last window of an epoch may be short
            boundary = i == window + size - 1
            if i == window:
                # Here rather than after step(): freeing the gradients just before the forward pass
                # lets the allocator reuse their memory for activations; freeing them after step()
                # measured ~10% slower on CPU (fresh pages for every backward).
                optimizer.zero_grad()  # set_to_none by default; Horovod's override takes no arguments
            with comm.sync_gradients(model, boundary):
                with autocast_context(self.device, self.mixed_precision):
                    outputs = model(inputs)
                    loss = loss_fn(outputs, targets)
                factor = comm.loss_factor / size  # mean over the window (and ranks, for a summing backend)
                scaled = loss * factor if factor != 1.0 else loss
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            batch = targets.shape[0]
            loss_sum.add_(loss.detach(), alpha=batch)
            if outputs.ndim == 2 and targets.ndim == 1 and not targets.is_floating_point():
                correct.add_((outputs.detach().argmax(1) == targets).sum())
                labelled += batch
            count += batch
            if boundary:
                comm.optimizer_step(optimizer, scaler)
                progress.step += 1
                progress.batch = i + 1
                stop = self.should_stop is not None and comm.any_true(bool(self.should_stop()))
                if stop or on_step is not None:
                    self._running = EpochTotals(float(loss_sum), float(correct), labelled, count)
                if stop:
                    return None
                if on_step is not None:
                    on_step()
        self._running = EpochTotals(float(loss_sum), float(correct), labelled, count)
        return self._running

    def evaluate(self) -> EpochTotals:
        """This rank's sums over its share of the validation data (zeros without a val_loader)."""
        if self.val_loader is None:
            return EpochTotals()
        # Not the DDP wrapper: evaluation must not touch gradient collectives. A sharded model
        # gathers its parameters in every forward, so there all ranks run as many forwards as the
        # rank with the most batches, the others on empty batches.
        model = self.raw_model
        model.eval()
        loss_sum, correct, labelled, count = 0.0, 0.0, 0.0, 0.0
        batches: Iterable[Any] = self.val_loader
        if self.comm.sharded:
            mine = len(self.val_loader)
            most = int(self.comm.all_reduce(torch.tensor([mine]), "max").item())
            batches = itertools.chain(batches, itertools.repeat(_empty_like_batch(self.val_loader), most - mine))
        with torch.no_grad(), autocast_context(self.device, self.mixed_precision):
            for inputs, targets in batches:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                outputs = model(inputs)
                if targets.shape[0] == 0:
                    continue
                batch = targets.shape[0]
                loss_sum += float(self.loss_fn(outputs, targets)) * batch
                if outputs.ndim == 2 and targets.ndim == 1 and not targets.is_floating_point():
                    correct += float((outputs.argmax(1) == targets).sum())
                    labelled += batch
                count += batch
        self.comm.after_evaluation(model)
        model.train()
        return EpochTotals(loss_sum, correct, labelled, count)

    def end_epoch(self, *, stopped_early: bool) -> None:
        """Advance to the start of the next epoch."""
        self.progress.epoch += 1
        self.progress.batch = 0
        self.progress.stopped_early = stopped_early
        self._running = EpochTotals()

    def release(self) -> None:
        """Drop the communication wrapper (DDP and its reducer); state_dict() keeps working."""
        self.model = self.raw_model

    # -- state ------------------------------------------------------------------------------------

    def state_dict(self, into: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything a fresh process needs to continue exactly here (collective: gathers per-rank RNG).

        `into`: an earlier state_dict() nothing reads any more, whose tensors are reused for the copies.
        """
        mine = {"rng": capture_rng(), "totals": self._running.as_tensor()}
        per_rank = self.comm.all_gather_object(mine)
        return {
            "format": STATE_FORMAT,
            "model": self.comm.model_state(self.raw_model, (into or {}).get("model")),
            "optimizer": self.comm.optimizer_state(self.optimizer, (into or {}).get("optimizer")),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "progress": asdict(self.progress),
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping is not None else {},
            "history": copy.deepcopy(self.history),
            "ranks": {str(rank): state for rank, state in enumerate(per_rank)},
            "world": {"world_size": self.comm.world_size, "num_threads": torch.get_num_threads(),
                      "accumulation_steps": self.accumulation_steps,
                      "batches_per_epoch": self.batches_per_epoch},
        }

    def _load(self, state: Mapping[str, Any]) -> tuple[Any, Any]:
        """Restore the loop's own state; return the model's and optimizer's for the backend to load."""
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(dict(state["scaler"]))
        if self.early_stopping is not None and state.get("early_stopping"):
            self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = [dict(record) for record in state.get("history", [])]
        self.progress = Progress(**{k: v for k, v in state["progress"].items()})
        _warn_on_mismatch(state.get("world", {}), self.comm.world_size, self.accumulation_steps)
        mine = state.get("ranks", {}).get(str(self.comm.rank))
        if mine is None:
            log.warning("checkpoint has no RNG state for rank %d; reseeding it (the run is no longer exact)",
                        self.comm.rank)
            seed_everything(derive_seed(int(self.meta.get("seed", 0)) + self.progress.step, self.comm.rank))
        else:
            self._pending_rng = mine["rng"]
            if self.progress.batch > 0:
                self._running = EpochTotals.from_list(mine["totals"])
        return state["model"], state["optimizer"]


def _warn_on_mismatch(saved: Mapping[str, Any], world_size: int, accumulation_steps: int) -> None:
    checks = {"world_size": world_size, "num_threads": torch.get_num_threads(),
              "accumulation_steps": accumulation_steps}
    for key, now in checks.items():
        if key in saved and int(saved[key]) != now:
            hint = " (set OMP_NUM_THREADS or torch.set_num_threads to match)" if key == "num_threads" else ""
            warnings.warn(f"checkpoint was written with {key}={saved[key]}, this run has {now}: the resumed "
                          f"run will not be bitwise equal to an uninterrupted one{hint}", RuntimeWarning,
                          stacklevel=4)


def _empty_like_batch(loader: DataLoader[Any]) -> Any:
    """A batch of zero samples shaped like the loader's (a forward pass over it computes nothing)."""
    sample = loader.collate_fn([loader.dataset[0]])
    return [part[:0] for part in sample]
