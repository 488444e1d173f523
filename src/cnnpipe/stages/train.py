"""Training: the loop, per-epoch evaluation, checkpoints every epoch, resume after a kill.

Resuming is exact: the weights, optimizer, scheduler and every random stream are restored
from the last completed epoch, so a run that was killed and restarted ends with the same
weights as one that was never interrupted."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cnnpipe.data.prepare import load_manifest, load_prepared
from cnnpipe.io.files import file_sha256, save_figure, write_csv, write_json
from cnnpipe.networks import checkpoint as ckpt
from cnnpipe.networks.lecture_cnn import build_model
from cnnpipe.runtime.device import autocast, model_device, seed_everything, select_device
from cnnpipe.runtime.logs import progress

log = logging.getLogger("cnnpipe.stages.train")

OPTIMIZERS = ("adamw", "adam", "sgd", "adadelta")
SCHEDULERS = ("onecycle", "cosine", "step", "none")
METRIC_COLUMNS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr"]


@dataclass
class TrainResult:
    model: nn.Module
    metrics: list[dict[str, float]]
    confusion: np.ndarray
    state: dict[str, Any]


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    name, lr, decay = cfg["optimizer"], float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=decay)
    raise ValueError(f"train.optimizer: {name!r} is not one of {list(OPTIMIZERS)}")


def make_scheduler(optimizer, cfg: dict, steps_per_epoch: int):
    """Schedulers step once per batch, so every one of them is defined in batches."""
    name, epochs = cfg["scheduler"], int(cfg["epochs"])
    total = max(1, epochs * steps_per_epoch)
    if name == "onecycle":
        # Adadelta has no momentum to cycle.
        cycle = "betas" in optimizer.defaults or optimizer.defaults.get("momentum", 0) > 0
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(cfg["lr"]), total_steps=total,
                                                   cycle_momentum=cycle)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if name == "step":  # pytorch/examples' MNIST recipe: x0.7 after every epoch
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=steps_per_epoch, gamma=0.7)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"train.scheduler: {name!r} is not one of {list(SCHEDULERS)}")


def fingerprint(model_cfg: dict, train_cfg: dict, seed: int, device: torch.device, data_hash: str) -> str:
    """What a checkpoint must match to be resumed: same data, model, settings, seed and device kind."""
    blob = json.dumps(
        {"data": data_hash, "model": model_cfg, "train": train_cfg, "seed": seed, "device": device.type},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
             batch_size: int = 1024, amp: bool = False) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and the predictions of ``model`` on a uint8 image tensor."""
    model.eval()
    total_loss, predictions = 0.0, []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        y = labels[start:start + batch_size].to(device)
        with autocast(device, amp):
            logits = model(x)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
    predicted = torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)
    accuracy = (predicted == labels).float().mean().item() if len(labels) else float("nan")
    return total_loss / max(1, len(images)), accuracy, predicted


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> np.ndarray:
    index = labels.long() * num_classes + predicted.long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes).numpy()


def interrupted_attempt(checkpoint_dir: str | os.PathLike | None, epochs: int) -> bool:
    """Whether ``checkpoint_dir`` holds the last checkpoint of an attempt that stopped before
    ``epochs`` (a killed job, which this run may resume): its log lines are worth keeping."""
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if last is None or not last.exists():
        return False
    try:
        return int(ckpt.load_checkpoint(last)["epoch"]) < int(epochs)
    except (ValueError, KeyError, OSError):
        return False


def _resume(last: Path | None, stamp: str, model, optimizer, scheduler, generator, epochs: int):
    """Restore the run from ``last`` when it is this run's checkpoint: (metrics, epochs done);
    otherwise nothing changes and the run starts at epoch 0."""
    if last is None or not last.exists():
        return [], 0
    try:
        state = ckpt.load_checkpoint(last)
    except ValueError as error:
        log.warning("ignoring unreadable checkpoint: %s", error)
        return [], 0
    if state["fingerprint"] != stamp:
        log.info("checkpoint %s belongs to other settings; starting afresh", last)
        return [], 0
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    scheduler.load_state_dict(state["scheduler_state"])
    ckpt.restore_rng_state(state["rng_state"], generator, model_device(model))
    metrics, start_epoch = list(state["metrics"]), int(state["epoch"])
    log.info("resuming from %s after epoch %d of %d", last, start_epoch, epochs)
    return metrics, start_epoch


def _train_epoch(model, optimizer, scheduler, images: torch.Tensor, labels: torch.Tensor, generator,
                 device: torch.device, batch_size: int, amp: bool, label_smoothing: float) -> tuple[float, int]:
    """One pass over the training set (already on ``device``) in a seeded random order;
    (summed loss, correct). Sums stay on the device: one sync per epoch, not two per step."""
    model.train()
    order = torch.randperm(len(images), generator=generator).to(images.device)
    # float64 as Python's float was (MPS has none); the same sums, bit for bit, on the CPU
    total = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for step in range(-(-len(images) // batch_size)):
        index = order[step * batch_size:(step + 1) * batch_size]
        x, y = to_float(images[index]), labels[index]
        with autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach().to(total.dtype) * len(index)
        correct += (logits.argmax(1) == y).sum()
    return float(total), int(correct)


def use_amp(device: torch.device, requested: bool) -> bool:
    """bfloat16 mixed precision where it pays: on CUDA GPUs that run bfloat16 natively (older
    ones only emulate it, slower than float32)."""
    return requested and device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def fit(data_path, manifest_path, model_cfg: dict, train_cfg: dict, seed: int, device_name: str = "auto",
        checkpoint_dir=None, show_progress: bool = True, on_epoch=None) -> TrainResult:
    """Train the lecture CNN; resume from ``checkpoint_dir/last.pt`` when it matches this run.

    ``on_epoch(row)`` is called after each epoch's evaluation (benchmarks time it).
    """
    device = select_device(device_name)
    generator = seed_everything(seed)
    manifest = load_manifest(manifest_path)
    data = load_prepared(data_path)
    train_x, train_y = data["train_images"], data["train_labels"]
    test_x, test_y = data["test_images"], data["test_labels"]
    amp = use_amp(device, bool(train_cfg.get("amp", True)))
    epochs, batch_size = int(train_cfg["epochs"]), int(train_cfg["batch_size"])
    steps_per_epoch = -(-len(train_x) // batch_size)

    model = build_model(model_cfg, manifest).to(device)
    # Moved once (uint8: CIFAR-10's 50000 images are 150 MB), not gathered from host memory every step.
    train_on_device, labels_on_device = train_x.to(device), train_y.to(device)
    optimizer = make_optimizer(model.parameters(), train_cfg)
    scheduler = make_scheduler(optimizer, train_cfg, steps_per_epoch)
    stamp = fingerprint(model_cfg, train_cfg, seed, device, file_sha256(data_path))
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    metrics, start_epoch = _resume(last, stamp, model, optimizer, scheduler, generator, epochs)

    log.info("training on %s (mixed precision: %s), %d parameters, %d train / %d test images",
             device, amp, sum(p.numel() for p in model.parameters()), len(train_x), len(test_x))
    state = None
    bar = progress(range(start_epoch, epochs), desc="training", unit="epoch", total=epochs, initial=start_epoch,
                   disable=not show_progress)
    for epoch in bar:
        began = time.perf_counter()
        loss_sum, correct = _train_epoch(model, optimizer, scheduler, train_on_device, labels_on_device, generator, device,
                                         batch_size, amp, float(train_cfg.get("label_smoothing", 0.0)))
        test_loss, test_acc, _ = evaluate(model, test_x, test_y, device, amp=amp)
        row = _metrics_row(epoch + 1, loss_sum, correct, len(train_x), test_loss, test_acc, scheduler)
        metrics.append(row)
        bar.set_postfix(train_loss=row["train_loss"], test_acc=row["test_accuracy"], refresh=False)
        if on_epoch is not None:
            on_epoch(row)
        state = make_state(model, model_cfg, manifest, epoch + 1, optimizer, scheduler, generator, metrics, stamp, seed)
        if last is not None:
            ckpt.save_checkpoint(last, state)
        _log_epoch(row, epochs, time.perf_counter() - began)
    bar.close()

    if state is None:  # everything was already done before a restart
        state = make_state(model, model_cfg, manifest, start_epoch, optimizer, scheduler, generator, metrics,
                           stamp, seed)
    _, _, predicted = evaluate(model, test_x, test_y, device, amp=amp)
    matrix = confusion_matrix(test_y, predicted, len(manifest["classes"]))
    return TrainResult(model=model.cpu().eval(), metrics=metrics, confusion=matrix, state=state)


def _metrics_row(epoch: int, loss_sum: float, correct: int, train_count: int, test_loss: float, test_acc: float,
                 scheduler) -> dict[str, float]:
    """One epoch's row of the metrics table (``METRIC_COLUMNS``), rounded as it is kept."""
    return {
        "epoch": epoch,
        "train_loss": round(loss_sum / train_count, 6),
        "train_accuracy": round(correct / train_count, 6),
        "test_loss": round(test_loss, 6),
        "test_accuracy": round(test_acc, 6),
        "lr": round(scheduler.get_last_lr()[0], 8),
    }


def _log_epoch(row: dict[str, float], epochs: int, seconds: float) -> None:
    """Log one epoch's metrics and how long it took."""
    log.info("epoch %d/%d: train loss %.4f acc %.4f | test loss %.4f acc %.4f | %.2f s",
             row["epoch"], epochs, row["train_loss"], row["train_accuracy"], row["test_loss"],
             row["test_accuracy"], seconds)


def make_state(model, model_cfg, manifest, epoch, optimizer, scheduler, generator, metrics, stamp, seed) -> dict:
    return {
        "format": ckpt.FORMAT,
        "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_config": dict(model_cfg),
        "classes": list(manifest["classes"]),
        "image_shape": list(manifest["image_shape"]),
        "normalization": manifest["normalization"],
        "dataset": manifest["dataset"],
        "epoch": epoch,
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(),
        "rng_state": ckpt.capture_rng_state(generator, model_device(model)),
        "metrics": list(metrics),
        "fingerprint": stamp,
        "seed": seed,
    }


def run_training(*, data_path, manifest_path, model_cfg: dict, train_cfg: dict, seed: int, device_name: str,
                 checkpoint_dir, model_path, metrics_csv, eval_json, curve_png, confusion_png,
                 show_progress: bool = True) -> dict:
    """Train (or resume), then write the final checkpoint, metrics, eval JSON and the two plots."""
    from cnnpipe.report import plots

    result = fit(data_path, manifest_path, model_cfg, train_cfg, seed, device_name, checkpoint_dir, show_progress)
    frame = pd.DataFrame(result.metrics, columns=METRIC_COLUMNS)
    classes = result.state["classes"]
    final = result.metrics[-1] if result.metrics else {}
    summary = {
        "test_accuracy": final.get("test_accuracy"),
        "test_loss": final.get("test_loss"),
        "train_accuracy": final.get("train_accuracy"),
        "epochs": result.state["epoch"],
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "classes": classes,
        "confusion_matrix": result.confusion.tolist(),
        "dataset": result.state["dataset"],
    }
    # Figures and tables first, the checkpoint (the rule's main output) last.
    save_figure(plots.learning_curve(frame), curve_png)
    save_figure(plots.confusion_matrix_figure(result.confusion, classes), confusion_png)
    write_csv(metrics_csv, frame)
    write_json(eval_json, summary)
    ckpt.save_checkpoint(model_path, result.state)
    log.info("test accuracy %.4f after %d epochs", summary["test_accuracy"] or float("nan"), summary["epochs"])
    return summary
