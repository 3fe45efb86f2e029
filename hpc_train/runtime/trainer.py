"""DistributedTrainer: data-parallel training inside a job, with exact resume from checkpoints."""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hpc_train.checkpoint import Checkpoint, CheckpointError, CheckpointStore, HDF5CheckpointStore
from hpc_train.checkpoint.background import BackgroundSaver
from hpc_train.checkpoint.hdf5 import RUN_KEY
from hpc_train.checkpoint.identity import RunIdentity
from hpc_train.errors import UserError
from hpc_train.runtime.activation_checkpointing import enable_gradient_checkpointing
from hpc_train.runtime.comm import (
    COMPRESSIONS,
    CommBackend,
    DDPBackend,
    FSDPBackend,
    HorovodBackend,
    LocalBackend,
)
from hpc_train.runtime.comm.base import local_bytes
from hpc_train.runtime.comm.fsdp import RESHARD_HINT, is_on_meta
from hpc_train.runtime.early_stopping import EarlyStopping
from hpc_train.runtime.environments import ClusterEnvironment, detect_environment
from hpc_train.runtime.job_checkpoints import (
    DEFAULT_KEEP_LAST,
    RUN_DIR_VAR,
    CheckpointPlace,
    job_checkpoint_place,
)
from hpc_train.runtime.loop import EpochTotals, TrainingLoop
from hpc_train.runtime.state import tensors_digest

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

BACKENDS = ("gloo", "nccl", "mpi")
CHECKPOINT_UNITS = ("epochs", "steps")
OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
DEFAULT_MOMENTUM = 0.9
# optimizer name -> builder(parameters, learning rate, momentum, weight decay); momentum is sgd's only
OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], float, float, float], torch.optim.Optimizer]] = {
    "adam": lambda params, lr, _momentum, decay: torch.optim.Adam(params, lr=lr, weight_decay=decay),
    "sgd": lambda params, lr, momentum, decay: torch.optim.SGD(params, lr=lr, momentum=momentum,
                                                               weight_decay=decay),
}


def _ddp(trainer: DistributedTrainer) -> CommBackend:
    address, port = trainer.master if trainer.master else (None, None)
    return DDPBackend(trainer.env, backend=trainer.backend, device=trainer.device, main_address=address,
                      main_port=port)


def _horovod(trainer: DistributedTrainer) -> CommBackend:
    return HorovodBackend(trainer.env, device=trainer.device)


def _fsdp(trainer: DistributedTrainer) -> CommBackend:
    address, port = trainer.master if trainer.master else (None, None)
    return FSDPBackend(trainer.env, backend=trainer.backend, device=trainer.device, main_address=address,
                       main_port=port)


# strategy name -> communication backend for a world of more than one rank
STRATEGIES: dict[str, Callable[[DistributedTrainer], CommBackend]] = {
    "ddp": _ddp,
    "data_parallel": _ddp,  # single-node DDP; checked after the group is up
    "horovod": _horovod,
    "model_parallel": _fsdp,
    "fsdp": _fsdp,
}
SHARDED_STRATEGIES = ("model_parallel", "fsdp")


class DistributedTrainer:
    """Trainer across ranks: DDP or Horovod (data parallel), FSDP (sharded), a plain loop alone.

    The rank and world come from the detected ClusterEnvironment (torchrun, SLURM step, mpirun or
    none); the process group is joined here. `backend` picks torch.distributed's transport for DDP
    (Horovod takes MPI or NCCL from how it was built and launched). `should_stop()` is polled at
    every optimizer step and agreed by all ranks; when true the trainer checkpoints and returns with
    `preempted` set. `on_epoch_end(record)` runs on rank 0 only. With a `checkpoint_store`, or a
    `checkpoint_dir` (an HDF5CheckpointStore there), train() resumes from its latest checkpoint, bit
    for bit when the thread count and world size match. Without either, inside a job (HPC_TRAIN_RUN_DIR
    set) a train() asked for a `checkpoint_interval` writes to and resumes from the job's checkpoint
    folder (`checkpoint.dir` of its spec, else `<run dir>/checkpoints`); outside a job it is refused.
    (`resume=False`: it only writes checkpoints and starts afresh). `momentum` (sgd only; default 0.9)
    and `weight_decay` configure the named optimizers.
    Sharded strategies (`model_parallel`, alias `fsdp`) need a sharded store: each rank writes its
    own shard of every checkpoint, and they resume onto the same world size.
    `async_checkpoints=True`: interval checkpoints are snapshotted (CPU copies) at the step boundary
    and written by a background thread while training goes on, one in flight at most; the final and
    the preemption checkpoint, and an exception leaving train(), wait for it (`checkpoint_waits`
    counts the waits that found a write still running).
    """

    def __init__(
        self,
        backend: str = "gloo",
        strategy: str = "ddp",
        num_gpus: int = 0,
        nodes: Sequence[Mapping[str, Any]] | None = None,
        master: str | None = None,
        accumulation_steps: int = 1,
        mixed_precision: bool = False,
        gradient_checkpointing: bool = False,
        compression: str = "none",
        learning_rate: float = 1e-3,
        optimizer: str | OptimizerFactory = "adam",
        seed: int = 0,
        early_stopping: Mapping[str, Any] | None = None,
        checkpoint_store: CheckpointStore | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        *,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        environment: ClusterEnvironment | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        momentum: float | None = None,
        weight_decay: float = 0.0,
        resume: bool = True,
        run_identity: RunIdentity | None = None,
        async_checkpoints: bool = False,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> None:
        _choice("backend", backend, BACKENDS)
        _choice("strategy", strategy, tuple(STRATEGIES))
        _choice("compression", compression, COMPRESSIONS)
        if isinstance(optimizer, str):
            _choice("optimizer", optimizer, tuple(OPTIMIZERS))
        if accumulation_steps < 1:
            raise UserError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
        if learning_rate <= 0:
            raise UserError(f"learning_rate must be positive, got {learning_rate}")
        if checkpoint_store is not None and checkpoint_dir is not None:
            raise UserError("give checkpoint_store or checkpoint_dir, not both\n"
                            "HINT: checkpoint_dir=PATH is short for checkpoint_store=HDF5CheckpointStore(PATH, ...)")
        _check_optimizer_settings(optimizer, momentum, weight_decay)
        self.momentum = DEFAULT_MOMENTUM if momentum is None else float(momentum)
        self.weight_decay = float(weight_decay)
        self.resume = bool(resume)
        self.run_identity = run_identity
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.async_checkpoints = bool(async_checkpoints)
        self._saver: BackgroundSaver | None = None
        self._spare: dict[str, Any] | None = None  # the snapshot in (or done with) the background write
        self.backend, self.strategy, self.compression = backend, strategy, compression
        self.accumulation_steps = int(accumulation_steps)
        self.mixed_precision, self.gradient_checkpointing = bool(mixed_precision), bool(gradient_checkpointing)
        self.learning_rate, self.optimizer_factory = float(learning_rate), optimizer
        self.seed = int(seed)
        self.early_stopping_config = dict(early_stopping) if early_stopping else None
        if self.early_stopping_config:
            EarlyStopping.from_config(self.early_stopping_config)  # reject bad settings now
        self.checkpoint_store, self.should_stop, self.on_epoch_end = checkpoint_store, should_stop, on_epoch_end
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.nodes = _check_nodes(nodes)
        self.master = _parse_master(master)
        self.env = environment or detect_environment()
        self.device = _pick_device(num_gpus, self.env, self.nodes)
        self.comm: CommBackend = LocalBackend() if self.env.world_size == 1 else STRATEGIES[strategy](self)
        if self.env.world_size == 1:
            for name, value in (("compression", compression), ("master", master)):
                if value not in ("none", None):
                    log.warning("%s=%r has no effect: this trainer has one rank, nothing to communicate", name, value)
        self.comm.setup()
        self._check_topology()
        self.checkpoint_dir: Path | None = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None:
            self.checkpoint_store = self._store_at(CheckpointPlace(self.checkpoint_dir, DEFAULT_KEEP_LAST,
                                                                   "checkpoint_dir"))
        self._check_store()
        self.history: list[dict[str, Any]] = []
        self.preempted = False
        self.resumed_from: int | None = None  # step of the checkpoint the last train() resumed from
        self.warm_started_from: str | None = None  # the resume_from file the last train() took weights from
        self.checkpointed_blocks = 0  # blocks the last train() recomputed in backward (gradient_checkpointing)
        self._loop: TrainingLoop | None = None

    # -- who am I ---------------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """Global rank of this process."""
        return self.comm.rank

    @property
    def world_size(self) -> int:
        """Number of ranks training together."""
        return self.comm.world_size

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files."""
        return self.rank == 0

    # -- training ---------------------------------------------------------------------------------

    def train(
        self,
        model: nn.Module,
        train_loader: DataLoader[Any],
        epochs: int,
        checkpoint_interval: int | None = None,
        val_loader: DataLoader[Any] | None = None,
        *,
        checkpoint_unit: str = "epochs",
    ) -> list[dict[str, Any]]:
        """Train for `epochs` (resuming from the store's latest checkpoint); returns per-epoch records.

        A checkpoint is written every `checkpoint_interval` epochs, or optimizer steps with
        `checkpoint_unit="steps"` (mid-epoch too), besides the final one and the one on preemption.
        An interval with nowhere to write (no store, no checkpoint_dir, not inside a job) is a UserError.
        """
        if epochs < 0:
            raise UserError(f"epochs must be non-negative, got {epochs}")
        if checkpoint_interval is not None and checkpoint_interval < 1:
            raise UserError(f"checkpoint_interval must be at least 1, got {checkpoint_interval}")
        _choice("checkpoint_unit", checkpoint_unit, CHECKPOINT_UNITS)
        if checkpoint_interval is not None and self.checkpoint_store is None:
            self.checkpoint_store = self._job_store(checkpoint_interval, checkpoint_unit)
        if self.early_stopping_config and self.early_stopping_config.get("metric", "val_loss").startswith("val_") \
                and val_loader is None:
            raise UserError("early_stopping watches a validation metric but train() got no val_loader\n"
                            "HINT: pass val_loader, or set early_stopping.metric to 'loss'")
        self.preempted = False
        # A model on the meta device (shapes only) gets its shards from the sharding backend. All ranks
        # agree first: a rank that stopped alone would leave the others waiting in a collective.
        on_meta = is_on_meta(model)
        problems = [p for p in self.comm.all_gather_object(self._meta_problem(model) if on_meta else "") if p]
        if problems:
            raise UserError(problems[0])
        if not on_meta:
            model = model.to(self.device)
        undo = enable_gradient_checkpointing(model) if self.gradient_checkpointing else None
        # blocks whose forward is recomputed in backward (the patch is an instance attribute)
        self.checkpointed_blocks = sum("forward" in vars(block) for block in getattr(model, "blocks", ())) \
            if undo is not None else 0
        loop: TrainingLoop | None = None
        try:
            loop = self._build_loop(model, train_loader, val_loader)
            self._loop = loop
            return self._run(loop, epochs, checkpoint_interval, checkpoint_unit)
        except BaseException:
            self._finish_background_save(quiet=True)  # the checkpoint being written still lands
            raise
        finally:
            if undo is not None:
                undo()
            if loop is not None and self.world_size > 1:
                # DDP's reducer keeps the process group and comm-hook futures (Python callbacks)
                # alive; if that lasts into interpreter shutdown, gloo can abort a finished run.
                loop.release()
                gc.collect()

    def state_dict(self) -> dict[str, Any]:
        """Full training state (collective: call on every rank); per-rank parts under state["ranks"]."""
        if self._loop is None:
            raise UserError("state_dict() is available once train() has started")
        return self._loop.state_dict()

    def param_digest(self) -> str:
        """sha256 of the whole parameters (as final_param_digest); collective: call on every rank."""
        loop = self._started("param_digest")
        return tensors_digest(self.comm.full_parameters(loop.raw_model))

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole trained model state as CPU tensors, on every rank (collective)."""
        loop = self._started("full_state_dict")
        return self.comm.full_state_dict(loop.raw_model)

    def state_bytes(self) -> dict[str, int]:
        """Bytes of parameters and of optimizer state held by this rank (its shards when sharded)."""
        loop = self._started("state_bytes")
        optimizer_tensors = [value for state in loop.optimizer.state.values() for value in state.values()
                             if isinstance(value, torch.Tensor)]
        return {"parameters": local_bytes(loop.raw_model.parameters()), "optimizer": local_bytes(optimizer_tensors)}

    @property
    def background_checkpoints(self) -> int:
        """Checkpoints written in the background so far (async_checkpoints)."""
        return len(self._saver.saved) if self._saver is not None else 0

    @property
    def checkpoint_waits(self) -> int:
        """Times training waited for a background checkpoint write still in flight (async_checkpoints)."""
        return self._saver.waits if self._saver is not None else 0

    def close(self) -> None:
        """Leave the process group this trainer created (after any checkpoint still being written)."""
        self._finish_background_save(quiet=True)
        self.comm.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _started(self, what: str) -> TrainingLoop:
        if self._loop is None:
            raise UserError(f"{what}() is available once train() has started")
        return self._loop

    def _meta_problem(self, model: nn.Module) -> str:
        """Why this rank cannot train `model`, which is on the meta device; "" if it can."""
        if not self.comm.sharded or self.rank == 0:
            return (f"rank {self.rank}: a model on the meta device trains only with strategy fsdp (model_parallel), "
                    "on ranks other than 0 (rank 0's parameters are handed out)\nHINT: build the model on the "
                    "meta device only there")
        hidden = [name for name, _ in model.named_buffers() if name not in model.state_dict()]
        if hidden:
            return (f"rank {self.rank}: a model on the meta device cannot have non-persistent buffers ({hidden[0]}): "
                    "nothing would fill them\nHINT: build the model on every rank")
        return ""

    def _build_loop(self, model: nn.Module, train_loader: DataLoader[Any],
                    val_loader: DataLoader[Any] | None) -> TrainingLoop:
        factory = self.optimizer_factory

        def make_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
            if isinstance(factory, str):
                return OPTIMIZERS[factory](params, self.learning_rate, self.momentum, self.weight_decay)
            return factory(params, self.learning_rate)

        early = EarlyStopping.from_config(self.early_stopping_config) if self.early_stopping_config else None
        checkpoint = self._load_checkpoint()
        warm = self._load_warm_start() if checkpoint is None and self.resume_from is not None else None
        loop = TrainingLoop(
            comm=self.comm, model=model, make_optimizer=make_optimizer,
            device=self.device, loss_fn=self.loss_fn,
            train_loader=train_loader, val_loader=val_loader, seed=self.seed, early_stopping=early,
            accumulation_steps=self.accumulation_steps, mixed_precision=self.mixed_precision,
            compression=self.compression, should_stop=self.should_stop, meta=self._meta(),
            resume=checkpoint.state if checkpoint is not None else None,
            warm_start=warm.state if warm is not None else None,
        )
        if checkpoint is not None:
            log.info("rank %d: resumed from checkpoint at step %d (epoch %d, batch %d)", self.rank,
                     checkpoint.step, loop.progress.epoch, loop.progress.batch)
        self.history = loop.history
        self.resumed_from = checkpoint.step if checkpoint is not None else None
        self.warm_started_from = str(warm.path) if warm is not None else None
        return loop

    def _load_warm_start(self) -> Checkpoint:
        """resume_from: weights and optimizer state of another run's checkpoint (a file, or a folder's newest).

        Explicit, so the run identity is not checked. Epochs, data position, RNG, early stopping and
        history start afresh: it is a new run from those weights (a run's own checkpoints, once it
        has written some, take precedence on a restart). Replicated strategies only on both sides.
        """
        source = self.resume_from
        assert source is not None
        if not source.exists():
            raise UserError(f"resume_from: {source} does not exist\nHINT: give a checkpoint file (.h5) or a "
                            "checkpoint folder, whose newest loadable checkpoint is used")
        store = HDF5CheckpointStore(source if source.is_dir() else source.parent, keep_last=None, read_only=True)
        try:
            found = store.load(None if source.is_dir() else source)
        except CheckpointError as e:
            raise UserError(f"resume_from: {e}") from e
        if found is None:
            raise UserError(f"resume_from: {source} holds no loadable checkpoint")
        sharded = found.meta.get("strategy") in SHARDED_STRATEGIES
        if sharded or self.strategy in SHARDED_STRATEGIES:
            raise UserError(f"resume_from: {found.path} was written by strategy {found.meta.get('strategy')} and this "
                            f"run uses {self.strategy}; starting from another run's weights works between "
                            "replicated strategies (ddp, horovod, none), not sharded ones")
        if not isinstance(found.state.get("model"), Mapping):
            raise UserError(f"resume_from: {found.path} holds no model state (is it a training checkpoint?)")
        log.info("rank %d: starting from the weights and optimizer state of %s (step %d); epochs, data order "
                 "and RNG start afresh", self.rank, found.path, found.step)
        return found

    def _load_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint every rank can load, agreed by all ranks (sharded: whose shards all have).

        A rank killed while saving leaves the others one checkpoint ahead, and a rank that cannot read a
        file (a damaged copy, a lagging network filesystem) would otherwise resume elsewhere and hang
        the others in a collective: every rank offers its steps, and all take the newest they share.
        """
        store = self.checkpoint_store
        if store is None or not self.resume:
            return None
        per_rank = self.comm.all_gather_object(store.steps())
        common = set.intersection(*(set(steps) for steps in per_rank))
        for step in sorted(common, reverse=True):
            try:
                checkpoint: Checkpoint | None = store.load(store.path_for(step))
            except CheckpointError as e:
                log.warning("rank %d: checkpoint unreadable, trying an older step: %s", self.rank, e)
                checkpoint = None
            if not self.comm.any_true(checkpoint is None):
                assert checkpoint is not None
                self._check_identity(checkpoint)
                if store.sharded:
                    self._check_sharded_world(str(checkpoint.path), checkpoint.meta)
                return checkpoint
        if store.sharded and per_rank[0]:
            # Nothing common, yet rank 0 has shards: the first save was torn (start afresh), unless
            # they came from a smaller world, whose missing ranks explain the gap (refuse).
            newest: tuple[str, dict[str, Any]] | None = None
            if self.is_main:
                try:
                    found = store.load(store.path_for(per_rank[0][-1]))
                    newest = (str(found.path), found.meta) if found is not None else None
                except CheckpointError:
                    newest = None
            newest = self.comm.all_gather_object(newest)[0]
            if newest is not None:
                self._check_sharded_world(*newest)
        return None

    def _check_identity(self, checkpoint: Checkpoint) -> None:
        """Refuse another run's checkpoint (every rank reads the same meta, so every rank refuses)."""
        theirs = checkpoint.meta.get(RUN_KEY)
        if self.run_identity is None or theirs is None or theirs == self.run_identity.hash:
            return
        differences = self.run_identity.differences(checkpoint.meta.get("run_fields") or {})
        raise UserError(
            f"{checkpoint.path.parent}: its newest checkpoint ({checkpoint.path.name}) belongs to another run "
            f"(run {theirs}; this one is run {self.run_identity.hash}); it differs in\n  "
            + "\n  ".join(differences or ["fields this version of hpc-train does not record"])
            + "\nHINT: give this run a checkpoint.dir of its own (or none: the run directory's), or set "
              "checkpoint.auto_resume: false to start afresh there without touching the other run's files")

    def _check_sharded_world(self, path: str, meta: Mapping[str, Any]) -> None:
        saved = meta.get("world_size")
        if saved is not None and int(saved) != self.world_size:
            raise UserError(f"checkpoint {path} holds one shard of {saved} (strategy {meta.get('strategy')}), but "
                            f"this run has {self.world_size} rank(s)\n{RESHARD_HINT}")

    def _run(self, loop: TrainingLoop, epochs: int, checkpoint_interval: int | None,
             checkpoint_unit: str) -> list[dict[str, Any]]:
        ran = False
        on_step = None
        if checkpoint_interval and checkpoint_unit == "steps":
            def on_step() -> None:
                progress = loop.progress
                last = progress.epoch + 1 >= epochs and progress.batch >= loop.batches_per_epoch
                if progress.step % checkpoint_interval == 0 and not last:  # the final save covers the last
                    self._save(loop, "interval")
        epoch_interval = checkpoint_interval if checkpoint_unit == "epochs" else None
        while loop.progress.epoch < epochs and not loop.progress.stopped_early:
            ran = True
            started = time.perf_counter()
            totals = loop.run_epoch(on_step)
            if totals is None:  # should_stop() fired on some rank: all ranks save and leave
                self._save(loop, "preempted")
                self.preempted = True
                return self.history
            record = self._finish_epoch(loop, totals, time.perf_counter() - started)
            if self.is_main and self.on_epoch_end is not None:
                self.on_epoch_end(record)
            done = loop.progress.stopped_early or loop.progress.epoch >= epochs
            if epoch_interval and loop.progress.epoch % epoch_interval == 0 and not done:
                self._save(loop, "interval")
        if ran:
            self._save(loop, "final")
        return self.history

    def _finish_epoch(self, loop: TrainingLoop, totals: EpochTotals, train_seconds: float) -> dict[str, Any]:
        started = time.perf_counter()
        val = loop.evaluate()
        # One collective for every number the epoch reports: the same record on every rank.
        summed = self.comm.all_reduce(torch.cat([totals.as_tensor(), val.as_tensor()])).tolist()
        train, evaluated = EpochTotals.from_list(summed[:4]), EpochTotals.from_list(summed[4:])
        duration = train_seconds + time.perf_counter() - started
        record: dict[str, Any] = {
            "epoch": loop.progress.epoch + 1,
            "step": loop.progress.step,
            "loss": train.mean_loss,
            "accuracy": train.accuracy,
            "val_loss": evaluated.mean_loss,
            "val_accuracy": evaluated.accuracy,
            "lr": float(loop.optimizer.param_groups[0]["lr"]),
            "samples_per_s": (train.count - loop.samples_before * self.world_size) / train_seconds
            if train_seconds > 0 else None,
            "duration": duration,
        }
        stop = loop.early_stopping.update(record) if loop.early_stopping is not None else False
        loop.history.append(record)
        loop.end_epoch(stopped_early=self.comm.any_true(stop))
        return record

    def _save(self, loop: TrainingLoop, reason: str) -> None:
        """Checkpoint here; with async_checkpoints an interval checkpoint is written in the background.

        Every rank first waits for its own write in flight, and only then enters the collective
        state_dict(): so once any rank passes it, every rank's previous file (every shard) is durable,
        and no rank writes or prunes past a checkpoint another rank may still lack. The final and the
        preemption checkpoint are written before _save returns: the process may exit right after.
        """
        store = self.checkpoint_store
        if store is None:
            return
        self._finish_background_save(quiet=False)
        # The last background snapshot is written and read by nobody now: its tensors take the copies.
        spare, self._spare = self._spare, None
        state = loop.state_dict(into=spare)  # collective; CPU copies, which training does not touch
        if self.is_main or self.comm.sharded:
            meta = {**self._meta(), "reason": reason, "epoch": loop.progress.epoch, "batch": loop.progress.batch}
            if self.async_checkpoints and reason == "interval":
                if self._saver is None or self._saver.store is not store:
                    self._saver = BackgroundSaver(store)
                self._saver.submit(state, step=loop.progress.step, meta=meta)
                self._spare = state
                log.info("checkpoint (%s) at step %d: writing in the background", reason, loop.progress.step)
            else:
                path = store.save(state, step=loop.progress.step, meta=meta)
                log.info("checkpoint (%s) at step %d: %s", reason, loop.progress.step, path)
        self.comm.barrier()

    def _finish_background_save(self, *, quiet: bool) -> None:
        """Wait for the checkpoint write in flight; its error is raised, or only logged when `quiet`
        (an exception is already leaving train())."""
        if self._saver is None:
            return
        try:
            self._saver.wait()
        except Exception as e:
            if not quiet:
                raise
            log.error("rank %d: the checkpoint written in the background failed: %s", self.rank, e)

    def _meta(self) -> dict[str, Any]:
        meta = {"strategy": self.strategy, "backend": self.backend, "world_size": self.world_size,
                "num_threads": torch.get_num_threads(), "seed": self.seed,
                "accumulation_steps": self.accumulation_steps, "environment": self.env.name}
        if self.run_identity is not None:
            meta.update({RUN_KEY: self.run_identity.hash, "run_fields": self.run_identity.fields})
        return meta

    def _store_at(self, place: CheckpointPlace) -> CheckpointStore:
        return HDF5CheckpointStore(place.directory, keep_last=place.keep_last, rank=self.rank,
                                   sharded=self.strategy in SHARDED_STRATEGIES,
                                   run_identity=self.run_identity.hash if self.run_identity else None)

    def _job_store(self, checkpoint_interval: int, unit: str) -> CheckpointStore:
        """The job's checkpoint folder as a store; refused outside a job, where nothing says where to write."""
        place = job_checkpoint_place()
        if place is None:
            raise UserError(
                f"checkpoint_interval={checkpoint_interval} asks for checkpoints, but this trainer has nowhere to "
                f"write them: no checkpoint_dir, no checkpoint_store, and not inside a job ({RUN_DIR_VAR} is unset)\n"
                "HINT: DistributedTrainer(checkpoint_dir=\"ckpt\") (rerunning the script then resumes from it), "
                "or checkpoint_store=HDF5CheckpointStore(...); inside a job (one hpc-train submitted, a pipeline "
                "stage) the job's checkpoint folder is the default; or leave out checkpoint_interval")
        self.checkpoint_dir = place.directory
        store = self._store_at(place)
        if self.is_main:
            log.info("checkpoints every %d %s go to %s (%s)", checkpoint_interval, unit, place.directory,
                     place.origin)
        return store

    def _check_store(self) -> None:
        store = self.checkpoint_store
        sharded = self.strategy in SHARDED_STRATEGIES
        if store is not None and store.sharded != sharded:
            raise UserError(f"strategy {self.strategy!r} needs a {'sharded' if sharded else 'whole-state'} "
                            f"checkpoint store, got a {'sharded' if store.sharded else 'whole-state'} one\n"
                            f"HINT: HDF5CheckpointStore(directory, rank=<global rank>, sharded={sharded})")

    def _check_topology(self) -> None:
        if self.world_size == 1:
            return
        if self.strategy == "data_parallel":
            multi_node = self.comm.all_reduce(torch.tensor([self.env.node_rank]), "max").item() > 0
            if multi_node:
                raise UserError("strategy 'data_parallel' runs on one node, but this job spans several\n"
                                "HINT: use strategy 'ddp' or 'horovod' for multi-node training")
        if self.nodes is not None:
            expected = sum(max(1, len(node.get("gpus", []))) for node in self.nodes)
            if expected != self.world_size:
                raise UserError(f"nodes describe {expected} ranks but {self.world_size} were launched\n"
                                "HINT: launch one task per listed GPU (srun --ntasks-per-node / mpirun -np)")


def _check_optimizer_settings(optimizer: str | OptimizerFactory, momentum: float | None, weight_decay: float) -> None:
    """momentum and weight_decay configure the named optimizers; they are refused where nothing would use them."""
    if weight_decay < 0:
        raise UserError(f"weight_decay must be non-negative, got {weight_decay}")
    if momentum is not None and not 0 <= momentum < 1:
        raise UserError(f"momentum must be in [0, 1), got {momentum}")
    if not isinstance(optimizer, str) and (momentum is not None or weight_decay):
        raise UserError("momentum and weight_decay configure the named optimizers ('sgd', 'adam'); an optimizer "
                        "factory builds its own\nHINT: pass them to the optimizer inside your factory")
    if optimizer == "adam" and momentum is not None:
        raise UserError("momentum is a setting of the 'sgd' optimizer; 'adam' has none\n"
                        "HINT: use optimizer='sgd', or leave momentum out")


def _choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UserError(f"{what} {value!r} is not one of: {', '.join(allowed)}")


def _parse_master(master: str | None) -> tuple[str, int] | None:
    if master is None:
        return None
    host, sep, port = master.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"master {master!r} must look like host:port, e.g. worker1:29500")
    return host, int(port)


def _check_nodes(nodes: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    if nodes is None:
        return None
    checked = []
    for i, node in enumerate(nodes):
        if not isinstance(node, Mapping) or "host" not in node:
            raise UserError(f"nodes[{i}] must be a mapping with a 'host' (and optional 'gpus' list), got {node!r}")
        gpus = node.get("gpus", [])
        if not isinstance(gpus, (list, tuple)) or not all(isinstance(g, int) for g in gpus):
            raise UserError(f"nodes[{i}].gpus must be a list of GPU indices, got {gpus!r}")
        checked.append({"host": str(node["host"]), "gpus": list(gpus)})
    return checked


def _pick_device(num_gpus: int, env: ClusterEnvironment, nodes: list[dict[str, Any]] | None) -> torch.device:
    wants_gpu = num_gpus > 0 or any(node["gpus"] for node in nodes or [])
    if not wants_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        log.warning("GPUs requested but CUDA is not available here; training on CPU")
        return torch.device("cpu")
    gpus = nodes[env.node_rank]["gpus"] if nodes and env.node_rank < len(nodes) else []
    gpus = gpus or list(range(torch.cuda.device_count()))
    return torch.device("cuda", gpus[env.local_rank % len(gpus)])

