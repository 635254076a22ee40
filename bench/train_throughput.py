"""Training throughput of our epoch loop vs the Ray Tune tutorial's DataLoader loop vs a bare loop.

Three ways to train the same model (same initial weights, SGD, batch size, device, precision)
for full epochs over the same CIFAR-10 training images, measured in training images per second:

- ours: ``trainables.cifar.train_epoch``: uint8 data on the device, seeded ``randperm``
  shuffle, batched on-device random crop (padding 4) + flip, normalisation, one sync per epoch.
- dataloader: the standard approach of the PyTorch tutorial "Hyperparameter tuning with Ray
  Tune": a torchvision-CIFAR10-style Dataset that turns each image into a PIL image and applies
  RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor and Normalize per sample, batched by
  ``torch.utils.data.DataLoader(shuffle=True, num_workers=os.cpu_count())`` (not persistent,
  as in the tutorial), with the tutorial's ``loss.item()`` per step.
- bare: forward/backward/step over normalised float batches already on the device, no
  shuffling, no augmentation: the ceiling any data pipeline can reach.

All three use bf16 autocast + channels_last on CUDA and fp32 on CPU, like our trainable, so the
ratios measure the data path only. Models: the tutorial's LeNet-style net and a mid-sized CNN
from ``build_model``. Timings exclude one untimed warm-up epoch per loop (and, for ours and
bare, the one-off copy of the dataset to the device).

    python bench/train_throughput.py --device auto --epochs 3 --batch-size 128
    python bench/train_throughput.py --quick     # a sanity run, numbers meaningless
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from trainables.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from trainables.cifar import DeviceSplit, EpochSettings, resolve_device, to_device, train_epoch
from trainables.config import DEVICES, ModelConfig
from trainables.data import default_data_dir, load_cifar10
from trainables.model import build_model, count_parameters
import machine  # bench/machine.py: run as `python bench/<name>.py`, so bench/ is on sys.path

LR, MOMENTUM = 0.01, 0.9  # the tutorial's SGD settings
QUICK_IMAGES = 512


class TutorialNet(nn.Module):
    """The tutorial's net: conv 3→6 k5, pool, conv 6→16 k5, pool, fc 120, 84, 10."""

    def __init__(self, l1: int = 120, l2: int = 84):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, l1)
        self.fc2 = nn.Linear(l1, l2)
        self.fc3 = nn.Linear(l2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class PilCifar(Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item, over our uint8 arrays: HWC array →
    PIL image → transform. (torchvision's class itself refuses our subset's checksums.)"""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # CIFAR10.data is N×32×32×3
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


@dataclass(frozen=True)
class Timing:
    images: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(run_epoch: Callable[[], int], *, epochs: int, device: torch.device) -> Timing:
    run_epoch()  # warm-up: allocator, cuDNN autotuning, thread pools
    _sync(device)
    start, images = time.perf_counter(), 0
    for _ in range(epochs):
        images += run_epoch()
    _sync(device)
    return Timing(images=images, seconds=time.perf_counter() - start)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _prepare(model: nn.Module, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def bench_ours(model: nn.Module, split: DeviceSplit, *, batch_size: int, epochs: int, device: torch.device) -> Timing:
    model, optimizer = _prepare(model, device)
    cuda = device.type == "cuda"
    settings = EpochSettings(batch_size=batch_size, loss_fn=nn.CrossEntropyLoss(), augment=True, crop_padding=4,
                             mixed_precision=cuda, channels_last=cuda)
    generator = torch.Generator(device=device).manual_seed(0)

    def run() -> int:
        return train_epoch(model, split, optimizer=optimizer, scheduler=None, settings=settings,
                           generator=generator).images

    return _timed(run, epochs=epochs, device=device)


def bench_dataloader(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, batch_size: int, epochs: int,
                     device: torch.device, num_workers: int) -> Timing:
    model, optimizer = _prepare(model, device)
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])
    loader = DataLoader(PilCifar(images, labels, transform), batch_size=batch_size, shuffle=True,
                        num_workers=num_workers)
    criterion = nn.CrossEntropyLoss()
    channels_last = device.type == "cuda"

    def run() -> int:
        model.train()
        seen, running_loss = 0, 0.0
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad()
            with _autocast(device):
                loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # as the tutorial does, every step
            seen += len(targets)
        return seen

    return _timed(run, epochs=epochs, device=device)


def bench_bare(model: nn.Module, split: DeviceSplit, *, batch_size: int, epochs: int, device: torch.device) -> Timing:
    model, optimizer = _prepare(model, device)
    cuda = device.type == "cuda"
    x = normalize(split.images, channels_last=cuda, dtype=torch.bfloat16 if cuda else torch.float32)
    y = split.labels
    steps = max(1, len(y) // batch_size)

    def run() -> int:
        model.train()
        for i in range(steps):
            xb, yb = x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        return steps * min(batch_size, len(y))

    return _timed(run, epochs=epochs, device=device)


def describe_run(device: torch.device) -> str:
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"CPU {machine.cpu_model()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}){gpu}; "
            f"torch {torch.__version__}; device {device}; {machine.describe()}")


def models() -> dict[str, Callable[[], nn.Module]]:
    mid = ModelConfig(num_blocks=3, convs_per_block=2, filters=32, filter_growth=2.0)
    return {"tutorial LeNet": TutorialNet, "mid CNN 32-64-128 (build_model)": lambda: build_model(mid)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop (after one warm-up epoch)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--data-dir", help="cifar-10-batches-py folder or its parent")
    p.add_argument("--num-workers", type=int, default=os.cpu_count(), help="DataLoader workers (tutorial: all cores)")
    p.add_argument("--quick", action="store_true", help=f"1 epoch on {QUICK_IMAGES} images: a sanity run")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.num_workers < 0:
        p.error("--epochs and --batch-size must be >= 1 and --num-workers >= 0")
    device = resolve_device(args.device)
    data = load_cifar10(args.data_dir or default_data_dir())
    images, labels = data.train_images, data.train_labels
    epochs = 1 if args.quick else args.epochs
    if args.quick:
        images, labels = images[:QUICK_IMAGES], labels[:QUICK_IMAGES]
    split = to_device(images, labels, device=device)
    print(describe_run(device))
    print(f"n: {epochs} timed epoch(s) of {len(labels)} training images per loop (after 1 warm-up epoch), "
          f"batch size {args.batch_size}, DataLoader num_workers={args.num_workers}")
    for name, make in models().items():
        torch.manual_seed(0)
        initial = make()
        kw = dict(batch_size=args.batch_size, epochs=epochs, device=device)
        ours = bench_ours(copy.deepcopy(initial), split, **kw)
        loader = bench_dataloader(copy.deepcopy(initial), images, labels, num_workers=args.num_workers, **kw)
        bare = bench_bare(copy.deepcopy(initial), split, **kw)
        print(f"\n{name} ({count_parameters(initial):,} parameters)")
        for label, t in (("ours", ours), ("dataloader", loader), ("bare", bare)):
            print(f"  {label:<11} {t.rate:9.1f} images/s  ({t.images} images in {t.seconds:.2f}s)")
        print(f"  ours/dataloader {ours.rate / loader.rate:.2f}x   ours/bare {ours.rate / bare.rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
