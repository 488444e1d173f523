"""Training time-to-accuracy: cnnpipe's default recipe against pytorch/examples' MNIST recipe.

The reference is a faithful reimplementation of pytorch/examples' `mnist/main.py`: two
convolution layers (32, 64 filters) and two fully connected layers (9216 -> 128 -> 10) with
dropout, Adadelta at lr 1.0, StepLR with gamma 0.7 after every epoch, batch 64, 14 epochs,
a test pass after every epoch. Both train on the same prepared data (the default config's
dataset), on the same machine, in this one process. We report the time the reference needs
for its 14 epochs, the accuracy it ends with, and the time cnnpipe's default recipe needs
to first reach that accuracy (training plus per-epoch testing for both).

Run: .venv/bin/python benchmarks/train_speed.py [--config config.yaml] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from cnnpipe.data import load_manifest, load_prepared, prepare_dataset
from cnnpipe.device import seed_everything, select_device
from cnnpipe.train import fit

ROOT = Path(__file__).resolve().parents[1]


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


def reference_run(data, manifest, device, seed, epochs=14, batch_size=64, test_batch=1000):
    """Returns [(seconds since start, test accuracy)] after each epoch."""
    seed_everything(seed)
    channels, size, _ = manifest["image_shape"]
    norm = manifest["normalization"]
    model = ExamplesNet(size, channels, len(manifest["classes"]), norm["mean"], norm["std"]).to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    train_x, train_y = data["train_images"], data["train_labels"]
    test_x, test_y = data["test_images"], data["test_labels"]
    generator = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        for i in range(0, len(order), batch_size):
            index = order[i:i + batch_size]
            x = train_x[index].to(device).float() / 255
            loss = F.nll_loss(model(x), train_y[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(test_x), test_batch):
                x = test_x[i:i + test_batch].to(device).float() / 255
                correct += (model(x).argmax(1).cpu() == test_y[i:i + test_batch]).sum().item()
        history.append((time.perf_counter() - start, correct / len(test_x)))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    device = select_device(args.device)

    with tempfile.TemporaryDirectory() as folder:
        data_path, manifest_path = Path(folder) / "dataset.pt", Path(folder) / "manifest.json"
        prepare_dataset(config["dataset"], seed=config["seed"], cache_dir=Path(folder) / "cache",
                        data_path=data_path, manifest_path=manifest_path)
        data, manifest = load_prepared(data_path), load_manifest(manifest_path)

        reference = reference_run(data, manifest, device, config["seed"])
        ref_seconds, ref_accuracy = reference[-1]

        ours: list[tuple[float, float]] = []
        start = time.perf_counter()
        fit(data_path, manifest_path, config["model"], config["train"], config["seed"], args.device,
            checkpoint_dir=None, show_progress=False,
            on_epoch=lambda row: ours.append((time.perf_counter() - start, row["test_accuracy"])))

    reached = next((seconds for seconds, accuracy in ours if accuracy >= ref_accuracy), None)
    print(f"dataset {manifest['dataset']} at {manifest['image_shape']}, device {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"reference (pytorch/examples MNIST recipe): {len(reference)} epochs, {ref_seconds:.2f} s, "
          f"final test accuracy {ref_accuracy:.4f}")
    print(f"cnnpipe default recipe: {len(ours)} epochs, {ours[-1][0]:.2f} s, "
          f"final test accuracy {ours[-1][1]:.4f}")
    if reached is None:
        print(f"cnnpipe never reached the reference accuracy {ref_accuracy:.4f}: no speed-up")
    else:
        print(f"time to {ref_accuracy:.4f}: reference {ref_seconds:.2f} s, cnnpipe {reached:.2f} s")
        print(f"speed-up to the reference's final accuracy: {ref_seconds / reached:.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
