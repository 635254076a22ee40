"""Batched, seeded CIFAR-10 augmentation and normalisation on uint8 tensors, on any device.

The whole dataset lives on the training device as uint8 (as in KellerJordan/cifar10-airbench);
once per epoch ``augment_batch`` crops and flips all of it at once, and each training batch is
then sliced out and turned into floats by ``normalize``. No per-sample Python, no PIL: this is
the hot path, and torchvision's per-sample ``RandomCrop``/``RandomHorizontalFlip`` in a
DataLoader spend far more time per image than a small CNN's training step on a CPU.

Why our own kernels: torchvision.transforms.v2 applies one random crop to a whole batch, not
one per image, and a per-image gather (advanced indexing) copies byte by byte. Instead images
are sorted by their random (shift, flip) draw so that every group sharing one draw is a single
strided slice copy: 2 * (2 * padding + 1) ** 2 bulk copies per call, whatever the batch size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Per-channel mean and std of the 50000 CIFAR-10 training images' pixels in [0, 1]. (The often
# copied std (0.2023, 0.1994, 0.2010) is the mean of per-image stds, not the pixel std.)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A seeded generator on ``device`` (random draws for CUDA tensors need a CUDA generator)."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def _check_images(images: torch.Tensor, generator: torch.Generator) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        desc = f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}"
        raise ValueError(f"`images` is {desc}, but must be a uint8 tensor N×C×H×W. "
                         "Keep the dataset as uint8 (torch.from_numpy(CifarArrays.train_images)).")
    if generator.device.type != images.device.type:
        raise ValueError(f"The generator is on {generator.device} but `images` are on {images.device}; "
                         "random draws must come from the images' device. "
                         f"Use make_generator(seed, {str(images.device)!r}).")


def augment_batch(images: torch.Tensor, *, generator: torch.Generator, crop_padding: int,
                  flip: bool = True, cutout: int = 0, order: torch.Tensor | None = None) -> torch.Tensor:
    """Randomly crop (zero padding ``crop_padding``), flip (p = 0.5) and cut out, per image.

    Same as torchvision's ``RandomCrop(size, padding=crop_padding)`` + ``RandomHorizontalFlip()``
    (+ Cutout, DeVries & Taylor 2017) applied to each image independently, but batched. Returns a
    new uint8 tensor, leaving ``images`` untouched; reproducible for a given generator state.
    With ``order`` (e.g. the epoch's ``randperm``), output ``i`` augments ``images[order[i]]``:
    the shuffle rides on a copy the augmentation makes anyway, instead of costing its own gather.
    """
    _check_images(images, generator)
    for name, value in (("crop_padding", crop_padding), ("cutout", cutout)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"The value of `{name}` is {value!r}, but must be an int >= 0 (0 = off).")
    if order is None:
        order = torch.arange(len(images), device=images.device)
    elif order.dim() != 1 or order.device != images.device or order.dtype != torch.long:
        raise ValueError(f"`order` is a {order.dtype} tensor of shape {tuple(order.shape)} on {order.device}, "
                         f"but must be a 1-D int64 index on {images.device} (e.g. torch.randperm).")
    out = _crop_flip(images, order, generator=generator, padding=crop_padding, flip=flip)
    if cutout > 0:
        _cutout_(out, generator=generator, size=cutout)
    return out


def take_rows(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``images[index]`` along dim 0, but copying whole rows: indexing the N-D tensor directly
    copies element by element, several times slower on CPU for uint8 images."""
    row = images[0].numel() if len(images) else 0
    return images.reshape(len(images), row).index_select(0, index).view(len(index), *images.shape[1:])


def _crop_flip(images: torch.Tensor, order: torch.Tensor, *, generator: torch.Generator, padding: int,
               flip: bool) -> torch.Tensor:
    n = len(order)
    height, width = images.shape[-2:]
    shifts = 2 * padding + 1
    flips = 2 if flip else 1
    if n == 0 or shifts * flips == 1:
        return take_rows(images, order)
    # One draw per output image: which of the shifts × shifts offsets, and whether to flip.
    draw = torch.randint(0, shifts * shifts * flips, (n,), generator=generator, device=images.device)
    by_draw = torch.argsort(draw)
    counts = torch.bincount(draw, minlength=shifts * shifts * flips).tolist()  # the one host sync
    padded = F.pad(take_rows(images, order[by_draw]), (padding, padding, padding, padding))
    grouped = torch.empty((n, *images.shape[1:]), dtype=images.dtype, device=images.device)
    start = 0
    for key, count in enumerate(counts):
        if count == 0:
            continue
        flipped, offset = divmod(key, shifts * shifts)
        dy, dx = divmod(offset, shifts)
        window = padded[start:start + count, :, dy:dy + height, dx:dx + width]
        grouped[start:start + count] = window.flip(3) if flipped else window
        start += count
    inverse = torch.empty_like(by_draw)
    inverse[by_draw] = torch.arange(n, device=by_draw.device)
    return take_rows(grouped, inverse)  # from draw order back to output order


def _cutout_(images: torch.Tensor, *, generator: torch.Generator, size: int) -> None:
    """Fill one size×size square per image (centre uniform over the image, clipped at the border)
    with the mean colour: DeVries & Taylor zero the square after normalisation, i.e. the mean."""
    n, channels, height, width = images.shape
    cy = torch.randint(0, height, (n, 1), generator=generator, device=images.device)
    cx = torch.randint(0, width, (n, 1), generator=generator, device=images.device)
    rows = torch.arange(height, device=images.device) - (cy - size // 2)  # (n, height)
    cols = torch.arange(width, device=images.device) - (cx - size // 2)
    mask = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    means = CIFAR10_MEAN if channels == len(CIFAR10_MEAN) else (0.5,) * channels
    for c in range(channels):
        images[:, c].masked_fill_(mask, round(means[c] * 255))


def normalize(images: torch.Tensor, *, channels_last: bool = False, dtype: torch.dtype = torch.float32,
              mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD) -> torch.Tensor:
    """uint8 N×C×H×W in [0, 255] -> ``dtype`` ((x / 255 - mean) / std), optionally channels_last.

    Conversion plus two in-place ops; one fused mixed-dtype op measured slower on CPU.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        desc = f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}"
        raise ValueError(f"`images` is {desc}, but must be a uint8 tensor N×C×H×W.")
    if images.shape[1] != len(mean) or len(mean) != len(std):
        raise ValueError(f"`images` have {images.shape[1]} channels but `mean`/`std` give {len(mean)}/{len(std)} "
                         "values; pass one mean and one std per channel.")
    if not dtype.is_floating_point:
        raise ValueError(f"The value of `dtype` is {dtype}, but must be a floating dtype (e.g. torch.float32).")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = images.to(dtype=dtype, memory_format=memory_format)
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=dtype).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=dtype).view(1, -1, 1, 1)
    return x.mul_(scale.to(images.device, non_blocking=True)).add_(shift.to(images.device, non_blocking=True))
