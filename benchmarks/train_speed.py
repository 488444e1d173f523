"""Training time-to-accuracy: cnnpipe's default recipe against pytorch/examples' MNIST recipe.

The reference is a faithful reimplementation of pytorch/examples' `mnist/main.py`: two
convolution layers (32, 64 filters) and two fully connected layers (9216 -> 128 -> 10) with
dropout, Adadelta at lr 1.0, StepLR with gamma 0.7 after every epoch, batch 64, 14 epochs,
a test pass (batch 1000) after every epoch. cnnpipe runs its default recipe (the config's
model and train sections, ``cnnpipe.stages.train.fit``) for its configured number of epochs. Both
train on the same prepared data (the default config's dataset), on the same machine, in
this one process, with the same number of torch threads.

Both sides are timed the same way: the clock counts training only, cumulatively, epoch by
epoch. Each side's per-epoch test pass is timed separately and left out (for cnnpipe the
benchmark wraps ``cnnpipe.stages.train.evaluate``), and so is setup before the first epoch (model
construction; for cnnpipe also loading the data and hashing it for its checkpoint
fingerprint). cnnpipe's clock does include the rest of its loop: per-step loss and accuracy
bookkeeping, and the in-memory training state it builds after every epoch (no checkpoint file
is written here).

Same conditions on a shared machine: the two sides run interleaved epoch by epoch (a
reference epoch runs inside cnnpipe's per-epoch callback, off cnnpipe's clock), so a busy
spell hits both; the reference goes first in odd repeats, cnnpipe in even ones. Each side
keeps its own global random stream (swapped in and out around every reference epoch), so
both train exactly as they would alone. The pair runs ``--repeats`` times (default 5); each
side's time to the end of epoch k is the sum of its epochs' median training times over the
repeats, so a busy spell that slows one repeat's epoch does not move it. The speed-up of each
repeat on its own is printed as well, to show the spread.

For each target test accuracy (0.95, 0.97 and the best the reference reaches in its 14
epochs) we report the training time each side needs to first reach it (the end of the first
epoch whose test accuracy is at or above the target), and the speed-up, reference time /
cnnpipe time ("n/a" where a side never reaches the target). Also each side's best accuracy
and when (training time and epoch) it first gets there. Note that cnnpipe's one-cycle
schedule is laid out for all its epochs, so its accuracy at epoch k is that of the middle of
a longer run, not of a k-epoch run; the reference's step schedule does not depend on the
number of epochs. Timings depend on how busy the machine is: the load average at the start
and the end is printed with the results.

Run: .venv/bin/python benchmarks/train_speed.py [--config config.yaml] [--device cpu] [--repeats 5]
     [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from record import add_option, record
from torch import nn

from cnnpipe.data.prepare import load_manifest, load_prepared, prepare_dataset
from cnnpipe.runtime.device import seed_everything, select_device
from cnnpipe.stages import train as train_module
from cnnpipe.stages.train import fit

ROOT = Path(__file__).resolve().parents[1]
FIXED_TARGETS = (0.95, 0.97)


class ExamplesNet(nn.Module):
    """pytorch/examples' MNIST network, sized for the input it is given."""

    def __init__(self, image_size: int, channels: int, classes: int, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.conv1 = nn.Conv2d(channels, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        side = (image_size - 4) // 2
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


class ReferenceRun:
    """The reference recipe, one epoch per ``epoch()`` call, on its own global random stream.

    ``history``: [(cumulative training seconds, test accuracy)] after each epoch;
    ``eval_seconds``: the time spent in the test passes (not in the training seconds)."""

    def __init__(self, data, manifest, device, seed, epochs=14, batch_size=64, test_batch=1000):
        outer = _rng_state(device)
        seed_everything(seed)
        channels, size, _ = manifest["image_shape"]
        norm = manifest["normalization"]
        self.model = ExamplesNet(size, channels, len(manifest["classes"]), norm["mean"], norm["std"]).to(device)
        self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=1.0)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.7)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = _rng_state(device)
        _set_rng_state(outer)
        self.data, self.device, self.epochs = data, device, epochs
        self.batch_size, self.test_batch = batch_size, test_batch
        self.history: list[tuple[float, float]] = []
        self.trained = self.eval_seconds = 0.0

    @property
    def done(self) -> bool:
        return len(self.history) >= self.epochs

    def epoch(self) -> None:
        model, optimizer, device, batch_size = self.model, self.optimizer, self.device, self.batch_size
        train_x, train_y = self.data["train_images"], self.data["train_labels"]
        test_x, test_y = self.data["test_images"], self.data["test_labels"]
        outer = _rng_state(device)
        _set_rng_state(self.rng)
        began = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_x), generator=self.generator)
        for i in range(0, len(order), batch_size):
            index = order[i:i + batch_size]
            x = train_x[index].to(device).float() / 255
            loss = F.nll_loss(model(x), train_y[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.scheduler.step()
        tested = time.perf_counter()
        self.trained += tested - began
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(test_x), self.test_batch):
                x = test_x[i:i + self.test_batch].to(device).float() / 255
                correct += (model(x).argmax(1).cpu() == test_y[i:i + self.test_batch]).sum().item()
        self.eval_seconds += time.perf_counter() - tested
        self.history.append((self.trained, correct / len(test_x)))
        self.rng = _rng_state(device)
        _set_rng_state(outer)


@contextmanager
def _patched(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield original
    finally:
        setattr(module, name, original)


def paired_run(data, manifest, data_path, manifest_path, config, device, device_name, reference_first):
    """One run of each recipe, interleaved epoch by epoch. Returns (reference, cnnpipe), each
    {"epochs": [(cumulative training seconds, test accuracy)], "eval_seconds": ...}.

    cnnpipe's clock starts when fit's epoch loop starts (it creates its progress bar just
    before); the time inside ``evaluate`` and inside the per-epoch callback (where the
    reference's epochs run) is taken off it."""
    reference = ReferenceRun(data, manifest, device, config["seed"])
    if reference_first:
        reference.epoch()
    marks = {"loop": None, "eval": 0.0, "callbacks": 0.0, "eval_in_epochs": 0.0}
    history: list[tuple[float, float]] = []
    real_progress, real_evaluate = train_module.progress, train_module.evaluate

    def progress(*args, **kwargs):
        bar = real_progress(*args, **kwargs)
        marks["loop"] = time.perf_counter()
        return bar

    def evaluate(*args, **kwargs):
        began = time.perf_counter()
        try:
            return real_evaluate(*args, **kwargs)
        finally:
            marks["eval"] += time.perf_counter() - began

    def on_epoch(row):
        now = time.perf_counter()
        history.append((now - marks["loop"] - marks["eval"] - marks["callbacks"], row["test_accuracy"]))
        marks["eval_in_epochs"] = marks["eval"]
        if not reference.done:
            reference.epoch()
        marks["callbacks"] += time.perf_counter() - now

    with _patched(train_module, "progress", progress), _patched(train_module, "evaluate", evaluate):
        fit(data_path, manifest_path, config["model"], config["train"], config["seed"], device_name,
            checkpoint_dir=None, show_progress=False, on_epoch=on_epoch)
    if marks["loop"] is None or (history and marks["eval_in_epochs"] == 0.0):
        raise RuntimeError("cnnpipe.stages.train.fit no longer calls train.progress / train.evaluate by those names: "
                           "update this benchmark's timing hooks")
    while not reference.done:  # only if the reference has more epochs than cnnpipe
        reference.epoch()
    # fit evaluates once more after its loop (for the confusion matrix): not part of the epochs.
    return ({"epochs": reference.history, "eval_seconds": reference.eval_seconds},
            {"epochs": history, "eval_seconds": marks["eval_in_epochs"]})


def accuracies(run) -> list[float]:
    return [accuracy for _, accuracy in run["epochs"]]


def durations(run) -> list[float]:
    """Training seconds of each epoch."""
    cumulative = [seconds for seconds, _ in run["epochs"]]
    return [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]


def typical_curve(runs) -> list[tuple[float, float]]:
    """[(cumulative training seconds, test accuracy)] per epoch, the seconds summed from each
    epoch's median duration over the repeats: a busy spell that slows one repeat's epoch does
    not move the curve. Accuracies are the first repeat's (they agree when training is
    deterministic, which main() checks)."""
    per_epoch = [statistics.median(column) for column in zip(*(durations(run) for run in runs))]
    curve, total = [], 0.0
    for seconds, accuracy in zip(per_epoch, accuracies(runs[0])):
        total += seconds
        curve.append((total, accuracy))
    return curve


def first_reach(curve, target):
    """(epoch, training seconds) at the end of the first epoch with accuracy >= target, or None."""
    return next(((epoch, seconds) for epoch, (seconds, accuracy) in enumerate(curve, 1) if accuracy >= target),
                None)


def describe(reach) -> str:
    return "never" if reach is None else f"{reach[1]:6.2f} s (epoch {reach[0]})"


def ratio(reference, ours) -> str:
    return "n/a" if reference is None or ours is None else f"{reference[1] / ours[1]:.1f}x"


def _load() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per side (median reported)")
    parser.add_argument("--threads", type=int, help="torch threads for both sides (default: torch's default)")
    add_option(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    device = select_device(args.device)

    references, ours = [], []
    with tempfile.TemporaryDirectory() as folder:
        data_path, manifest_path = Path(folder) / "dataset.pt", Path(folder) / "manifest.json"
        prepare_dataset(config["dataset"], seed=config["seed"], cache_dir=Path(folder) / "cache",
                        data_path=data_path, manifest_path=manifest_path)
        data, manifest = load_prepared(data_path), load_manifest(manifest_path)
        print(f"dataset {manifest['dataset']} at {manifest['image_shape']}, device {device}, "
              f"{torch.get_num_threads()} threads, {args.repeats} repeats, the two sides interleaved epoch by "
              f"epoch; load average {_load()} at the start", flush=True)
        for rep in range(args.repeats):
            reference_first = rep % 2 == 0
            ref, our = paired_run(data, manifest, data_path, manifest_path, config, device, args.device,
                                  reference_first)
            references.append(ref)
            ours.append(our)
            for side, run in (("reference", ref), ("cnnpipe", our)):
                seconds, accuracy = run["epochs"][-1]
                print(f"  repeat {rep + 1} ({'reference' if reference_first else 'cnnpipe'} first) {side:9s}: "
                      f"{len(run['epochs'])} epochs, {seconds:6.2f} s training (+ {run['eval_seconds']:.2f} s "
                      f"test passes), final test accuracy {accuracy:.4f}", flush=True)
    print(f"load average {_load()} at the end (1, 5, 15 min; {os.cpu_count()} CPUs)")

    for name, runs in (("reference", references), ("cnnpipe", ours)):
        if any(accuracies(run) != accuracies(runs[0]) for run in runs):
            print(f"WARNING: {name}'s per-epoch test accuracies differ between repeats (training is not "
                  "deterministic here); the curves below use the first repeat's accuracies")

    ref_curve, our_curve = typical_curve(references), typical_curve(ours)
    print("\nepoch | reference: training s, test acc | cnnpipe: training s, test acc   (cumulative sums of each "
          "epoch's median training time over the repeats)")
    for i in range(max(len(ref_curve), len(our_curve))):
        cells = [f"{rows[i][0]:7.2f} s  {rows[i][1]:.4f}" if i < len(rows) else " " * 17
                 for rows in (ref_curve, our_curve)]
        print(f"{i + 1:5d} | {cells[0]} | {cells[1]}")

    ref_best = max(accuracies(references[0]))
    targets = [(t, f"{t:.2f}") for t in FIXED_TARGETS] + [(ref_best, f"{ref_best:.4f} (reference's best)")]
    print("\ntime to first reach a test accuracy (training only, per-epoch test passes excluded for both);"
          " speed-up = reference time / cnnpipe time, then each repeat's own:")
    rows = []
    for target, label in targets:
        ref_reach, our_reach = first_reach(ref_curve, target), first_reach(our_curve, target)
        rows.append({"case": "reference best" if label.endswith("(reference's best)") else f"{target:.2f}",
                     "target": round(target, 4), "repeats": args.repeats, "device": str(device),
                     "reference_s": ref_reach and round(ref_reach[1], 2),
                     "cnnpipe_s": our_reach and round(our_reach[1], 2),
                     "speedup": None if ref_reach is None or our_reach is None else
                     round(ref_reach[1] / our_reach[1], 1)})
        each = ", ".join(ratio(first_reach(r["epochs"], target), first_reach(o["epochs"], target))
                         for r, o in zip(references, ours))
        goal = "   (goal >= 3x)" if label.endswith("(reference's best)") else ""
        print(f"  {label:26s}: reference {describe(ref_reach)}, cnnpipe {describe(our_reach)}; "
              f"speed-up {ratio(ref_reach, our_reach)} (repeats: {each}){goal}")

    print("\nbest test accuracy and when each side first reaches it:")
    for name, runs, curve in (("reference (pytorch/examples MNIST recipe)", references, ref_curve),
                              ("cnnpipe default recipe", ours, our_curve)):
        best = max(accuracy for _, accuracy in curve)
        evals = statistics.median(run["eval_seconds"] for run in runs)
        print(f"  {name}: best {best:.4f} after {describe(first_reach(curve, best))}; all {len(curve)} epochs "
              f"{curve[-1][0]:.2f} s training (+ {evals:.2f} s test passes, median)")
        side = "reference" if runs is references else "cnnpipe"
        for row in rows:  # the same on every row: each side's best and when it first got there
            row[f"{side}_best"] = round(best, 4)
            row[f"{side}_best_s"] = round(first_reach(curve, best)[1], 2)
    if not args.no_record:
        record("train_speed", rows)


if __name__ == "__main__":
    main()
