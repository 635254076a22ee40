"""trainables.augment: batched crop/flip/cutout are seeded, per image and correct; normalisation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainables.augment import CIFAR10_MEAN, CIFAR10_STD, augment_batch, make_generator, normalize, take_rows
from trainables.data import load_cifar10


def _noise(n: int, *, seed: int = 0, size: int = 32) -> torch.Tensor:
    # Random pixels in 1..255, so every crop window and its mirror image are distinct and the
    # zero padding can never be mistaken for content.
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _windows(image: torch.Tensor, padding: int) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every crop (dy, dx) of the zero-padded image, flipped or not: what augment may return."""
    size = image.shape[-1]
    padded = F.pad(image, (padding,) * 4)
    out = {}
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, dy:dy + size, dx:dx + size]
            out[(dy, dx, False)] = window
            out[(dy, dx, True)] = window.flip(-1)
    return out


def _which(original: torch.Tensor, augmented: torch.Tensor, padding: int) -> tuple[int, int, bool]:
    matches = [k for k, w in _windows(original, padding).items() if torch.equal(w, augmented)]
    assert len(matches) == 1, "the augmented image is not one crop (and flip) of its own input"
    return matches[0]


def test_same_seed_same_output_different_seed_differs() -> None:
    images = _noise(64)
    a = augment_batch(images, generator=make_generator(7), crop_padding=4, cutout=8)
    b = augment_batch(images, generator=make_generator(7), crop_padding=4, cutout=8)
    c = augment_batch(images, generator=make_generator(8), crop_padding=4, cutout=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_preserves_dtype_shape_and_input() -> None:
    images = _noise(10)
    before = images.clone()
    out = augment_batch(images, generator=make_generator(0), crop_padding=4, cutout=6)
    assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
    assert torch.equal(images, before)


def test_each_image_is_a_crop_and_flip_of_itself_with_every_draw_used() -> None:
    # 1000 images over 2 * 5 * 5 = 50 equally likely draws: each draw is missing with
    # probability (49/50) ** 1000 < 1e-8, so all 50 must show up.
    padding = 2
    images = _noise(1000, size=8)
    out = augment_batch(images, generator=make_generator(1), crop_padding=padding)
    draws = [_which(images[i], out[i], padding) for i in range(len(images))]
    assert set(draws) == set(_windows(images[0], padding))
    flipped = sum(f for _, _, f in draws)
    assert 400 < flipped < 600  # p = 0.5; this band is > 6 standard deviations wide


def test_crop_really_shifts_content() -> None:
    images = _noise(200)
    out = augment_batch(images, generator=make_generator(2), crop_padding=4, flip=False)
    unchanged = sum(torch.equal(images[i], out[i]) for i in range(len(images)))
    assert unchanged < 20  # identity is 1 of 81 shifts
    shift = next(i for i in range(len(images)) if not torch.equal(images[i], out[i]))
    dy, dx, flipped = _which(images[shift], out[shift], 4)
    assert not flipped and (dy, dx) != (4, 4)
    # Content moved by (dy - 4, dx - 4), and the border the shift exposed is zero padding.
    assert (out[shift] == 0).any()


def test_flip_really_flips() -> None:
    images = _noise(100)
    out = augment_batch(images, generator=make_generator(3), crop_padding=0, flip=True)
    same = [torch.equal(images[i], out[i]) for i in range(len(images))]
    mirrored = [torch.equal(images[i].flip(-1), out[i]) for i in range(len(images))]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 20 < sum(mirrored) < 80


def test_nothing_to_do_returns_a_copy() -> None:
    images = _noise(5)
    out = augment_batch(images, generator=make_generator(0), crop_padding=0, flip=False)
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()
    assert augment_batch(images[:0], generator=make_generator(0), crop_padding=4).shape == (0, 3, 32, 32)


def test_cutout_fills_one_clipped_square_with_the_mean_colour() -> None:
    images = _noise(300)
    size = 8
    out = augment_batch(images, generator=make_generator(4), crop_padding=0, flip=False, cutout=size)
    fill = torch.tensor([round(m * 255) for m in CIFAR10_MEAN], dtype=torch.uint8)
    changed = (out != images).any(dim=1)  # (n, h, w)
    areas = changed.sum(dim=(1, 2))
    assert (areas <= size * size).all() and (areas > 0).all()
    assert (areas == size * size).sum() > 100  # most squares lie fully inside the image
    for i in range(len(images)):
        rows = changed[i].any(dim=1).nonzero().squeeze(1)
        cols = changed[i].any(dim=0).nonzero().squeeze(1)
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        assert torch.equal(out[i][box], fill.view(3, 1, 1).expand_as(out[i][box]))
        assert len(rows) <= size and len(cols) <= size


def test_order_shuffles_in_the_same_pass() -> None:
    images = _noise(50)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    fused = augment_batch(images, generator=make_generator(5), crop_padding=3, cutout=4, order=order)
    separate = augment_batch(images[order], generator=make_generator(5), crop_padding=3, cutout=4)
    assert torch.equal(fused, separate)
    subset = augment_batch(images, generator=make_generator(5), crop_padding=0, flip=False, order=order[:7])
    assert torch.equal(subset, images[order[:7]])


def test_take_rows_is_indexing() -> None:
    images = _noise(20)
    index = torch.tensor([3, 3, 0, 19])
    assert torch.equal(take_rows(images, index), images[index])


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"`order` is a torch.float32 tensor .* must be a 1-D int64 index"):
        augment_batch(_noise(2), generator=make_generator(0), crop_padding=4, order=torch.zeros(2))
    with pytest.raises(ValueError, match=r"must be a uint8 tensor"):
        augment_batch(_noise(2).float(), generator=make_generator(0), crop_padding=4)
    with pytest.raises(ValueError, match=r"`crop_padding` is -1, but must be an int >= 0"):
        augment_batch(_noise(2), generator=make_generator(0), crop_padding=-1)
    with pytest.raises(ValueError, match=r"`cutout` is 2.5"):
        augment_batch(_noise(2), generator=make_generator(0), crop_padding=4, cutout=2.5)


def test_rejects_generator_on_another_device() -> None:
    images = torch.empty((2, 3, 32, 32), dtype=torch.uint8, device="meta")
    with pytest.raises(ValueError, match=r"generator is on cpu but `images` are on meta.*make_generator"):
        augment_batch(images, generator=make_generator(0), crop_padding=4)


def test_normalize_matches_formula_and_layout() -> None:
    images = _noise(4)
    x = normalize(images, channels_last=True, dtype=torch.float32)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert normalize(images, channels_last=False).is_contiguous()
    assert normalize(images, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_normalize_centres_the_real_subset(cifar_dir: Path) -> None:
    images = torch.from_numpy(load_cifar10(cifar_dir).train_images)
    x = normalize(images)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=0.1, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=0.1, rtol=0)


def test_normalize_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"must be a uint8 tensor"):
        normalize(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"have 1 channels"):
        normalize(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must be a floating dtype"):
        normalize(_noise(1), dtype=torch.int32)
