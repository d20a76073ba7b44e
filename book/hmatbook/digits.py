"""Exp. 3 of the summary: a small CNN whose dense layers are compressed.

Data: scikit-learn's handwritten digits (1797 images of 8 x 8 pixels, 10 classes), which ship
inside the package: nothing is downloaded. A seeded stratified split gives train and test sets.
The CNN has two convolutions and two wide dense layers (``fc1``: 512 -> width, ``fc2``: width ->
width) that are compressed; the small output layer stays dense.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

__all__ = ["DigitsData", "load_digits_data", "SmallCNN", "train_cnn", "accuracy",
           "COMPRESSED_LAYERS", "is_compressed_layer"]

COMPRESSED_LAYERS = ("fc1", "fc2")


def is_compressed_layer(name: str, layer) -> bool:
    """Predicate for :func:`hmat.nn.replace_linear`: the two wide dense layers."""
    return name in COMPRESSED_LAYERS


@dataclass
class DigitsData:
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_data(test_fraction: float = 0.3, seed: int = 0) -> DigitsData:
    """The digits as (N, 1, 8, 8) float32 tensors in [0, 1], stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    Xtr, Xte, ytr, yte = train_test_split(X, d.target, test_size=test_fraction,
                                          random_state=seed, stratify=d.target)
    return DigitsData(torch.from_numpy(Xtr), torch.from_numpy(ytr).long(),
                      torch.from_numpy(Xte), torch.from_numpy(yte).long())


class SmallCNN(nn.Module):
    """conv(1->16) - conv(16->32) - maxpool - fc1(512->width) - fc2(width->width) - fc3(->10)."""

    def __init__(self, width: int = 256, seed: int = 0):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.fc1 = nn.Linear(32 * 4 * 4, width)
            self.fc2 = nn.Linear(width, width)
            self.fc3 = nn.Linear(width, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def train_cnn(model: nn.Module, data: DigitsData, epochs: int = 20, lr: float = 1e-3,
              batch: int = 64, seed: int = 0, progress: bool = True) -> dict:
    """Adam on cross-entropy, shuffled mini-batches from a seeded generator."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    n = len(data.y_train)
    losses = []
    t0 = time.perf_counter()
    model.train()
    for _ in tqdm(range(epochs), desc="train CNN", disable=not progress):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch):
            idx = perm[i: i + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(data.X_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - t0}


def correct(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per test image: is the top-1 prediction right? (inference mode: H-matrix layers use the
    numba kernels); two models compared image by image give a paired interval."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            pred = model(X).argmax(1)
    finally:
        model.train(was)
    return (pred == y).numpy()


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(correct(model, X, y).mean())
