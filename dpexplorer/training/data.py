"""Training crops: the whole photo folder held in RAM as uint8, random crops with flips.

A plain in-process sampler rather than a DataLoader: on a 2-core machine worker processes only
steal cycles from the model, and cropping from memory costs microseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dpexplorer.io.images import list_images, load_image


def split_holdout(folder: str | Path, holdout: int) -> tuple[list[Path], list[Path]]:
    """(training, held-out) photos: the last `holdout` files in name order are kept for validation."""
    paths = list_images(folder)
    if holdout <= 0:
        return paths, []
    if holdout >= len(paths):
        raise ValueError(f"cannot hold out {holdout} of the {len(paths)} images in {folder}")
    return paths[:-holdout], paths[-holdout:]


class CropSampler:
    def __init__(self, folder: str | Path, crop: int, seed: int = 0, max_images: int | None = None,
                 *, holdout: int = 0, device: torch.device | str = "cpu"):
        paths, _ = split_holdout(folder, holdout)
        if max_images:
            paths = paths[:max_images]
        self.images = []
        for p in paths:
            img = load_image(p)  # HxWx3 uint8
            if min(img.shape[:2]) >= crop:
                self.images.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).to(device))
        if not self.images:
            raise ValueError(f"no image of at least {crop}x{crop} px in {folder}")
        self.crop = crop
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, size: int) -> torch.Tensor:
        """A float batch in [0, 1], shape (size, 3, crop, crop), on the sampler's device."""
        out = torch.empty(size, 3, self.crop, self.crop, dtype=torch.uint8, device=self.device)
        for i in range(size):
            img = self.images[self.rng.integers(len(self.images))]
            _, h, w = img.shape
            top = self.rng.integers(h - self.crop + 1)
            left = self.rng.integers(w - self.crop + 1)
            patch = img[:, top:top + self.crop, left:left + self.crop]
            if self.rng.random() < 0.5:
                patch = patch.flip(2)
            if self.rng.random() < 0.5:
                patch = patch.flip(1)
            out[i] = patch
        return out.float().div_(255.0)


class MultiScaleCropSampler(CropSampler):
    """Crops of `crop` px from the photo downscaled by s ~ U[min_scale, 1]: a crop/s window resized
    with an antialiased filter (the same pixels as downscaling the whole photo, then cropping)."""

    def __init__(self, folder, crop: int, min_scale: float, seed: int = 0, **kw):
        super().__init__(folder, crop, seed=seed, **kw)
        self.min_scale = min_scale

    def batch(self, size: int) -> torch.Tensor:
        if self.min_scale >= 1:
            return super().batch(size)
        out = torch.empty(size, 3, self.crop, self.crop, device=self.device)
        for i in range(size):
            img = self.images[self.rng.integers(len(self.images))]
            _, h, w = img.shape
            s = self.rng.uniform(self.min_scale, 1.0)
            win = min(int(round(self.crop / s)), h, w)
            top, left = self.rng.integers(h - win + 1), self.rng.integers(w - win + 1)
            patch = img[:, top:top + win, left:left + win][None].float().div(255.0)
            if win != self.crop:
                patch = F.interpolate(patch, size=(self.crop, self.crop), mode="bicubic", antialias=True,
                                      align_corners=False)
                # the 8-bit photo the codec would be given
                patch = patch.clamp(0, 1).mul(255).round().div(255)
            if self.rng.random() < 0.5:
                patch = patch.flip(3)
            if self.rng.random() < 0.5:
                patch = patch.flip(2)
            out[i] = patch[0]
        return out
