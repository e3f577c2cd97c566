"""Training and fine-tuning the railsight model.

From scratch: crops of synthetic scenes rendered on the fly (``models.dataset``). Fine-tuning:
crops of the user's own scenes and labels, starting from ``init`` (the shipped weights or a file),
optionally mixed with synthetic scenes so the model does not forget the rest of the world.

- Channels-last everywhere; bf16 autocast on CUDA and on CPUs that multiply bf16 natively (AMX,
  AVX512-BF16: 2.7x faster than fp32 on this project's machine), else fp32 (``precision``).
- Reproducible from ``seed`` for a given device and DataLoader worker count: the model's initial
  weights, the scene seeds, the crops and augmentations all derive from it.
- Checkpoints every ``checkpoint_every`` steps and on Ctrl-C (model, optimiser, step, elapsed
  time); ``resume`` continues from one. A resumed run draws fresh scenes from where it left off, so
  it is deterministic too, though not bit-identical to an uninterrupted run.
- ``max_seconds`` caps the wall time: the learning-rate schedule (warm-up, then cosine) follows
  whichever is further along, steps or clock, and the run stops when the budget is spent. Such a
  run is not step-for-step reproducible (its length depends on the machine); ``steps`` alone is.
- The weights file carries ``ModelMeta``; ``extra`` records the data engine's seed and version,
  hardware, wall time, steps, batch and crop size, the final loss, and for fine-tuning the scenes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from kernels.normalise import normalise
from models.allocator import keep_freed_memory
from models.dataset import (
    SYNTH_SCENE_PX,
    TRAIN_SEED_MIN,
    CropStream,
    GridSample,
    fixed_scenes,
    mixed_scenes,
    pixel_size_scenes,
    shared_scenes,
    synthetic_scenes,
    tone_ranges,
    user_sample,
)
from models.distillation import DISTIL_WEIGHT, ViewsTeacher, distillation_loss
from models.interface import TTA_VIEWS, ModelMeta
from models.loading import autocast_bf16, build_model, read_weights, resolve_device, save_weights
from models.losses import IGNORE, railsight_loss
from models.spec import SHIPPED_WEIGHTS
from models.synth.conditions import SEASONS
from models.unet import DEFAULT_BLOCKS, DEFAULT_WIDTHS, build_unet, count_parameters
from models.weight_average import ema_model

if TYPE_CHECKING:
    from service.colour_balance import BalanceBox

MODEL_VERSION = "0.1.0"
# Training scenes whose range of band balance and least brightness spread a run records
# (``tone_ranges``): 40 engine scenes of 768 px render in about 30 s on a 2-core CPU. On run 17's
# scenes the quartiles of the first 24 differed from those of 40 by up to 0.015, of the first 32 by
# up to 0.008.
COLOUR_BALANCE_SCENES = 40


@dataclass
class TrainConfig:
    steps: int = 2000
    # One crop side and batch, or several of each (cycled step by step: see ``schedule``).
    batch: int | tuple[int, ...] = 8
    crop: int | tuple[int, ...] = 256
    seed: int = 0
    out: str = "railsight-trained.pt"
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32
    init: str | None = None  # None: from scratch; "shipped" or a weights path
    lr: float | None = None  # default: 3e-3 from scratch, 5e-4 when fine-tuning
    weight_decay: float = 1e-4
    scenes: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    labels_crs: str | None = None
    synth_share: float | None = None  # fine-tuning: share of synthetic scenes mixed in (default 0)
    # ((season, share), ...): each share of the synthetic scenes is rendered in its season, to train
    # harder on conditions the model is weakest in; the rest draw their season as the engine does.
    season_share: tuple[tuple[str, float], ...] = ()
    # ((low, high), share): that share of the synthetic scenes is rendered at a pixel size in
    # [low, high] m (drawn independently of the season share); the rest draw 0.25-1.0 m.
    pixel_size_share: tuple[tuple[float, float], float] | None = None
    # Share of training crops given a wide photometric shift (``models.photometric``): other sensors
    # and renderers. 0 keeps the mild jitter only, as every run up to run 23 had.
    shift_share: float = 0.0
    # Decay of an exponential moving average of the weights, which is then what the run writes (the
    # last raw weights go beside it, OUT with suffix .raw.pt); None trains and writes the raw weights.
    ema: float | None = None
    # Train towards the --init weights' own mean over this many test-time views as well as the labels
    # (models.distillation); None: the labels alone.
    distil_views: int | None = None
    # Extra weight in the core cross-entropy of footprint pixels outside the cores: the rim that parts
    # two coupled cars (models.losses). 0 weighs them as any other pixel, as every run up to run 28 did.
    gap_weight: float = 0.0
    synth_size_px: int = SYNTH_SCENE_PX
    crops_per_scene: int | None = None  # default 24 synthetic, 8 for a user's scenes
    pool: int = 3
    workers: int | None = None  # DataLoader workers; default 1 (renders scenes beside training)
    threads: int | None = None  # torch CPU threads
    checkpoint: str | None = None  # default: OUT with suffix .ckpt
    checkpoint_every: int = 200
    resume: bool = False
    max_seconds: float | None = None  # wall-clock budget: stop early, the schedule follows the clock
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    blocks: tuple[int, ...] = DEFAULT_BLOCKS
    progress: bool = True
    version: str = MODEL_VERSION
    name: str = "railsight-unet"
    synth_overrides: dict = field(default_factory=dict)

    @property
    def finetune(self) -> bool:
        return bool(self.scenes)

    @property
    def crops(self) -> tuple[int, ...]:
        return _as_tuple(self.crop)

    @property
    def batches(self) -> tuple[int, ...]:
        return _as_tuple(self.batch)

    @property
    def schedule(self) -> tuple[tuple[int, int], ...]:
        """((crop px, batch), ...), one per step in turn: ``crop`` and ``batch`` paired up, a single
        batch going with every crop side."""
        batches = self.batches * len(self.crops) if len(self.batches) == 1 else self.batches
        return tuple(zip(self.crops, batches, strict=True))

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint) if self.checkpoint else Path(self.out).with_suffix(".ckpt")

    def _check_share(self, option: str, share: float) -> None:
        """A share of the synthetic training scenes: above 0, at most 1, and not when fine-tuning."""
        if not 0 < share <= 1:
            raise ValueError(f"{option}: share must be above 0 and at most 1, got {share:g}")
        if self.finetune:
            raise ValueError(f"{option} applies to synthetic training, not fine-tuning")

    def check(self) -> None:
        """Raises ValueError naming the first bad setting."""
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        crops, batches = self.crops, self.batches
        if not crops or any(c < 64 or c % 32 for c in crops):
            raise ValueError(f"--crop must be a multiple of 32 and at least 64, got {_listed(crops)}")
        if not batches or any(b < 1 for b in batches):
            raise ValueError(f"--batch must be at least 1, got {_listed(batches)}")
        if len(batches) not in (1, len(crops)):
            raise ValueError(f"--batch: give one batch, or one per crop side ({len(crops)}), got {_listed(batches)}")
        if len(self.scenes) != len(self.labels):
            raise ValueError(f"--scenes and --labels must pair up: got {len(self.scenes)} scene(s) and "
                             f"{len(self.labels)} labels file(s)")
        if self.lr is not None and not (0 < self.lr < 1):
            raise ValueError(f"--lr must be between 0 and 1, got {self.lr}")
        if self.synth_share is not None and not (0 <= self.synth_share <= 1):
            raise ValueError(f"--synth-share must be between 0 and 1, got {self.synth_share}")
        if not 0 <= self.shift_share <= 1:
            raise ValueError(f"--shift-share must be between 0 and 1, got {self.shift_share:g}")
        if self.gap_weight < 0:
            raise ValueError(f"--gap-weight must be 0 or more, got {self.gap_weight:g}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"--ema must be between 0 and 1, got {self.ema:g}")
        if self.distil_views is not None:
            if self.distil_views not in TTA_VIEWS[1:]:
                choices = ", ".join(map(str, TTA_VIEWS[1:]))
                raise ValueError(f"--distil-views must be one of {choices}, got {self.distil_views}")
            if not self.init and not self.finetune:
                raise ValueError("--distil-views needs --init: the weights trained on from are the teacher")
        if self.synth_share and not self.finetune:
            raise ValueError("--synth-share only applies when fine-tuning (--scenes/--labels)")
        if self.season_share:
            for season, share in self.season_share:
                if season not in SEASONS:
                    raise ValueError(f"--season-share: season must be one of {', '.join(SEASONS)}, got {season!r}")
                self._check_share("--season-share", share)
            seasons = [season for season, _ in self.season_share]
            if len(set(seasons)) < len(seasons):
                raise ValueError(f"--season-share: each season at most once, got {', '.join(seasons)}")
            total = sum(share for _, share in self.season_share)
            if total > 1 + 1e-9:
                raise ValueError(f"--season-share: the shares add up to {total:g}, more than 1")
        if self.pixel_size_share is not None:
            (low, high), share = self.pixel_size_share
            if not 0.05 <= low < high <= 5.0:
                raise ValueError(f"--pixel-size-share: need 0.05 <= LOW < HIGH <= 5 metres, got {low:g}-{high:g}")
            self._check_share("--pixel-size-share", share)
        if self.crops_per_scene is not None and self.crops_per_scene < 1:
            raise ValueError(f"--crops-per-scene must be at least 1, got {self.crops_per_scene}")
        if self.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every must be at least 1, got {self.checkpoint_every}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"--max-minutes must be positive, got {self.max_seconds / 60:g}")
        if self.seed < 0:
            raise ValueError(f"--seed must be 0 or more, got {self.seed}")


def _as_tuple(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def _one_or_list(values: tuple[int, ...]) -> int | list[int]:
    """How the metadata records crop sides and batches: a number when there is one, else a list."""
    return values[0] if len(values) == 1 else list(values)


def _listed(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values)) or "(none)"


@dataclass
class TrainResult:
    out: Path
    meta: ModelMeta
    steps: int
    seconds: float
    losses: list[float]  # mean loss per logged window, in order


def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} torch thread(s) of {os.cpu_count()} core(s)"


def engine_version() -> str:
    try:
        import models.synth as synth
    except ImportError:
        return "unavailable"
    return str(getattr(synth, "ENGINE_VERSION", getattr(synth, "__version__", "unknown")))


def initial_model(cfg: TrainConfig) -> tuple[torch.nn.Module, ModelMeta]:
    """A fresh UNet (from the seed) or the weights named by ``init``."""
    if cfg.init:
        path = SHIPPED_WEIGHTS if cfg.init == "shipped" else Path(cfg.init)
        meta, state = read_weights(path)
        model = build_model(meta)
        model.load_state_dict(state)
        return model, meta
    torch.manual_seed(cfg.seed)
    model = build_unet(cfg.widths, cfg.blocks)
    meta = ModelMeta(name=cfg.name, version=cfg.version, arch="unet",
                     arch_args={"widths": list(cfg.widths), "blocks": list(cfg.blocks)})
    return model, meta


def scene_source(cfg: TrainConfig, model_pixel_size_m: float, colour_balance: BalanceBox | None = None,
                 min_spread: float | None = None) -> tuple[Callable[[int], GridSample], list[str]]:
    """Where crops come from, and the names of the user scenes (if any), which are read with the
    model's ``colour_balance`` and ``min_spread`` as the pipeline will read scenes for it."""
    synth = synthetic_scenes(cfg.seed, cfg.synth_size_px, **cfg.synth_overrides)
    if not cfg.finetune:
        # The same training seeds, so a scene index picks one layout in one of several looks.
        synth = shared_scenes(synth, [
            (synthetic_scenes(cfg.seed, cfg.synth_size_px, **{**cfg.synth_overrides, "season": season}), share)
            for season, share in cfg.season_share])
        if cfg.pixel_size_share:
            (low, high), share = cfg.pixel_size_share
            sized = pixel_size_scenes(cfg.seed, low, high, cfg.synth_size_px, **cfg.synth_overrides)
            synth = mixed_scenes(synth, sized, share, sequence=1)
        return synth, []
    samples = [user_sample(s, lab, model_pixel_size_m=model_pixel_size_m, labels_crs=cfg.labels_crs,
                           colour_balance=colour_balance, min_spread=min_spread)
               for s, lab in zip(cfg.scenes, cfg.labels, strict=True)]
    return mixed_scenes(fixed_scenes(samples), synth, cfg.synth_share or 0.0), [s.name for s in samples]


def raw_weights_path(out: str | Path) -> Path:
    """Where a run with ``--ema`` writes its last raw (unaveraged) weights."""
    return Path(out).with_suffix(".raw.pt")


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, times a cosine decay to 2 % of the peak over the run's
    ``progress`` (0..1: the share of steps done, or of the time budget if that is further along)."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _save_checkpoint(path: Path, model, opt, step: int, elapsed: float, losses: list[float],
                     cfg: TrainConfig, ema=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                **({"ema": ema.state_dict()} if ema is not None else {}),
                "step": step, "elapsed_s": elapsed, "losses": losses,
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"}}, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig, *, scene_at: Callable[[int], GridSample] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or fine-tune) and write the weights to ``cfg.out``. ``scene_at`` replaces the scene
    source (tests)."""
    cfg.check()
    keep_freed_memory()  # CPU steps 1.34 -> 1.20 s (8 x 256 px, 2 cores) with it: models/allocator.py
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, scene_at, log or (lambda _msg: None))
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainConfig, scene_at: Callable[[int], GridSample] | None,
           say: Callable[[str], None]) -> TrainResult:
    device = resolve_device(cfg.device)
    model, meta = initial_model(cfg)
    names: list[str] = []
    if scene_at is None:
        scene_at, names = scene_source(cfg, meta.pixel_size_m, meta.colour_balance, meta.min_spread)
    finetune = cfg.finetune
    lr = cfg.lr or (5e-4 if finetune or cfg.init else 3e-3)
    bf16 = autocast_bf16(device, cfg.precision)
    # The teacher is the init weights as they are now, before any step (or a resumed checkpoint).
    teacher = ViewsTeacher(model, device, cfg.distil_views, bf16) if cfg.distil_views else None
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    ema = ema_model(model, cfg.ema) if cfg.ema is not None else None
    warmup = max(1, min(100, cfg.steps // 20))
    start_step, elapsed0, losses = 0, 0.0, []
    ckpt = cfg.checkpoint_path
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        start_step, elapsed0, losses = int(state["step"]), float(state["elapsed_s"]), list(state["losses"])
        say(f"resuming from {ckpt} at step {start_step}")
    crops_per_scene = cfg.crops_per_scene or (8 if finetune and not cfg.synth_share else 24)
    workers = 1 if cfg.workers is None else cfg.workers
    schedule = cfg.schedule
    crops_done = sum(schedule[s % len(schedule)][1] for s in range(start_step))
    stream = CropStream(scene_at, seed=cfg.seed, schedule=schedule, crops_per_scene=crops_per_scene, pool=cfg.pool,
                        first_index=math.ceil(crops_done / crops_per_scene), shift_share=cfg.shift_share)
    # The stream draws whole batches (each at its step's crop side), so the loader does not batch.
    loader = DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
                        worker_init_fn=_worker_init if workers else None,
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    torch.manual_seed(cfg.seed + start_step)
    mean, std = meta.mean, meta.std
    model.train()
    started = time.perf_counter()
    window: list[float] = []
    log_every = max(1, min(50, cfg.steps // 20))
    bar = tqdm(total=cfg.steps, initial=start_step, unit="step", desc="train", disable=not cfg.progress or None)
    batches = iter(loader)
    done = start_step
    try:
        for step in range(start_step, cfg.steps):
            elapsed = elapsed0 + time.perf_counter() - started
            if cfg.max_seconds and elapsed >= cfg.max_seconds:
                say(f"time budget of {cfg.max_seconds:.0f} s reached after {step} steps")
                break
            progress = step / cfg.steps
            if cfg.max_seconds:
                progress = max(progress, elapsed / cfg.max_seconds)
            current_lr = lr * lr_factor(step, warmup, progress)
            for group in opt.param_groups:
                group["lr"] = current_lr
            batch = next(batches)
            x = normalise(batch["image"].to(device, non_blocking=True), mean, std)
            x = x.contiguous(memory_format=torch.channels_last)
            semantic = batch["semantic"].to(device, non_blocking=True)
            cores = batch["cores"].to(device, non_blocking=True)
            known = batch["known"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss, parts = railsight_loss(logits.float(), semantic, cores, known, cfg.gap_weight)
            if teacher is not None:
                kd = distillation_loss(logits, *teacher(x), semantic != IGNORE)
                loss = loss + DISTIL_WEIGHT * kd
                parts["distil"] = float(kd.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            done = step + 1
            window.append(float(loss.detach()))
            if len(window) == log_every:
                losses.append(float(np.mean(window)))
                window = []
                bar.set_postfix(loss=f"{losses[-1]:.3f}", sem=f"{parts['semantic']:.3f}",
                                dice=f"{parts['core_dice']:.3f}", lr=f"{current_lr:.1e}")
                if bar.disable and len(losses) % 5 == 0:  # no bar (not a terminal): a plain log line
                    say(f"step {step + 1}/{cfg.steps} loss {losses[-1]:.3f} lr {current_lr:.1e} "
                        f"{elapsed0 + time.perf_counter() - started:.0f} s")
            bar.update(1)
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                _save_checkpoint(ckpt, model, opt, step + 1,
                                 elapsed0 + time.perf_counter() - started, losses, cfg, ema)
    except KeyboardInterrupt:
        _save_checkpoint(ckpt, model, opt, done, elapsed0 + time.perf_counter() - started, losses, cfg, ema)
        say(f"interrupted: checkpoint at step {done} in {ckpt}; --resume continues")
        raise
    finally:
        bar.close()
        del batches
    if window:
        losses.append(float(np.mean(window)))
    seconds = elapsed0 + time.perf_counter() - started
    model.eval()
    extra = dict(meta.extra)
    history = list(extra.get("history", []))
    record = {
        "kind": "fine-tune" if finetune else ("continue" if cfg.init else "scratch"),
        "steps": done,
        "batch": _one_or_list(cfg.batches),
        "crop_px": _one_or_list(cfg.crops),
        "lr": lr,
        "seed": cfg.seed,
        "device": device.type,
        "hardware": hardware_name(device),
        "precision": "bf16 autocast" if bf16 else "fp32",
        "train_seconds": round(seconds, 1),
        "final_loss": round(losses[-1], 4) if losses else None,
        **({"shift_share": cfg.shift_share} if cfg.shift_share else {}),
        **({"gap_weight": cfg.gap_weight} if cfg.gap_weight else {}),
        **({"ema_decay": cfg.ema} if ema is not None else {}),
        **({"distil_views": cfg.distil_views, "distil_weight": DISTIL_WEIGHT} if teacher is not None else {}),
        "engine": {"name": "models.synth", "version": engine_version(), "run_seed": cfg.seed,
                   "scene_seeds": f"models.dataset.train_scene_seed(run_seed, i) >= {TRAIN_SEED_MIN}",
                   "scene_px": cfg.synth_size_px,
                   "synth_share": 1.0 if not finetune else (cfg.synth_share or 0.0),
                   **({"season_share": dict(cfg.season_share)} if cfg.season_share else {}),
                   **({"pixel_size_share": {"range_m": list(cfg.pixel_size_share[0]), "share": cfg.pixel_size_share[1]}}
                      if cfg.pixel_size_share else {})},
    }
    if finetune:
        record["scenes"] = [Path(n).name for n in names]
    # The per-class confidence floors were chosen on validation for the weights trained on from. They
    # are kept, as a starting point: without them a fine-tuned file's false cargo on cargo-free
    # scenes tripled (MODEL.md). The history says they are inherited; choose them again when it matters.
    if "min_confidence" in extra:
        record["confidence_floors"] = "inherited"  # not "min_confidence": extra.update(record) would replace them
    history.append(record)
    extra.update(record)
    extra["history"] = history
    extra["total_steps"] = sum(int(h.get("steps", 0)) for h in history)
    extra["total_train_seconds"] = round(sum(float(h.get("train_seconds", 0.0)) for h in history), 1)
    extra.pop("notes", None)  # free text about an earlier run: the history says what happened since
    # The railcar width trim stays: it is mostly the geometry of a rectangle fitted around
    # stair-stepped pixels, and weights trained on from these keep their footprint habits.
    extra["parameters"] = count_parameters(model)
    # Weights trained on from others keep their ranges, as their scenes did.
    if "colour_balance" not in extra or "min_brightness_spread" not in extra:
        for key, found in tone_ranges(map(scene_at, range(COLOUR_BALANCE_SCENES))).items():
            extra.setdefault(key, found)
    out_meta = dataclasses.replace(meta, extra=extra,
                                   version=meta.version if cfg.init else cfg.version)
    if ema is not None:
        # The raw weights too, so an evaluation can tell whether the average paid.
        raw_meta = dataclasses.replace(out_meta, extra={**extra, "raw_of_ema_run": True})
        save_weights(raw_weights_path(cfg.out), model, raw_meta)
        model = ema.module.eval()
    path = save_weights(cfg.out, model, out_meta)
    if ckpt.is_file():
        ckpt.unlink()
    say(f"wrote {path} ({done} steps, {seconds:.0f} s, {record['hardware']})")
    return TrainResult(path, out_meta, done, seconds, losses)
