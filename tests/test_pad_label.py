"""Where augmentation pads a crop: the label mirrored like the image (the default) or left out
of the loss (``TrainConfig.pad_label="ignore"``)."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from maskseg.train.dataset import SegmentationDataset
from maskseg.train.losses import BCEDiceLoss, soft_dice_loss
from maskseg.train.transforms import IGNORE, padded, train_transform


def zoom_out(scale: float, rotate: float = 0.0, track: bool = True) -> A.Compose:
    affine = A.Affine(
        scale=(scale, scale),
        rotate=(rotate, rotate),
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_REFLECT_101,
        p=1,
    )
    return A.Compose([affine], save_applied_params=track)


def test_padded_is_the_frame_a_zoom_out_adds():
    """Scaled by 0.5 about the centre, a 100 px crop keeps its content in the middle 50 px:
    the other three quarters are padding (to a pixel at the edges)."""
    image = np.zeros((100, 100, 3), np.uint8)
    out = zoom_out(0.5)(image=image, mask=np.zeros((100, 100), np.uint8))
    pad = padded(out, (100, 100))
    assert not pad[27:73, 27:73].any()
    assert pad[:23].all() and pad[77:].all() and pad[:, :23].all() and pad[:, 77:].all()
    assert pad.mean() == pytest.approx(0.75, abs=0.03)


def test_padded_matches_a_constant_border_with_the_same_draw():
    """The same draw (seed) with a constant border marks the padding with the fill: the two
    maps agree but for anti-aliased edge pixels."""
    for seed in range(5):
        reflect = zoom_out(0.75, rotate=20.0)
        constant = A.Compose(
            [
                A.Affine(
                    scale=(0.75, 0.75),
                    rotate=(20.0, 20.0),
                    mask_interpolation=cv2.INTER_NEAREST,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill_mask=255,
                    p=1,
                )
            ]
        )
        image, mask = np.zeros((80, 80, 3), np.uint8), np.zeros((80, 80), np.uint8)
        reflect.set_random_seed(seed)
        constant.set_random_seed(seed)
        pad = padded(reflect(image=image, mask=mask), (80, 80))
        marked = constant(image=image, mask=mask)["mask"] == 255
        assert (pad != marked).mean() < 0.02 and marked.mean() > 0.3


def test_a_mask_cut_at_the_edge_runs_on_when_reflected_and_is_left_out_when_ignored():
    """A mask on the crop's lower 40 rows, zoomed out by 0.7: reflected, its label reaches the
    new bottom edge; with ``pad_label="ignore"`` the padded rows are ``IGNORE`` and the rest of
    the label is unchanged."""
    image = np.zeros((1, 100, 100, 3), np.uint8)
    image[0, 60:] = 200
    mask = np.zeros((1, 100, 100), np.uint8)
    mask[0, 60:] = 1
    plain = SegmentationDataset.from_arrays(["a"], image, mask, augment="standard", seed=1)
    ignore = SegmentationDataset.from_arrays(
        ["a"], image, mask, augment="standard", seed=1, pad_label="ignore"
    )
    zoom = zoom_out(0.7)
    for ds in (plain, ignore):
        ds.transform = zoom  # one known draw instead of the preset's random one
        ds.ignore_padding = ds is ignore
    _, reflected = plain[0]
    _, left_out = ignore[0]
    assert reflected[0, 99, 50] == 1  # the mask runs on to the new bottom edge
    assert left_out[0, 99, 50] == IGNORE and left_out[0, 80, 50] == 1
    kept = left_out[0] != IGNORE
    np.testing.assert_array_equal(left_out[0][kept], reflected[0][kept])
    assert 0.3 < (~kept).mean() < 0.7


def test_an_unknown_pad_label_is_refused():
    with pytest.raises(ValueError, match="pad_label"):
        SegmentationDataset.from_arrays(
            ["a"], np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8), pad_label="x"
        )
    assert train_transform("standard", track_padding=True) is not None
    # the strong preset's perspective step is not an affine one: refused before any sample
    with pytest.raises(ValueError, match="perspective"):
        train_transform("strong", track_padding=True)


def test_ignored_pixels_count_for_nothing_in_the_loss():
    """Hand-made: half the pixels ignored. The loss equals the loss over the kept half alone,
    whatever the logits say on the ignored half, and its gradient there is zero."""
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 1, 8, 8)).float()
    target[..., 4:] = IGNORE
    loss = BCEDiceLoss()(logits, target)
    loss.backward()
    assert torch.all(logits.grad[..., 4:] == 0) and logits.grad[..., :4].abs().sum() > 0
    kept_logits = logits.detach()[..., :4].contiguous()
    kept_target = target[..., :4].contiguous()
    assert loss.item() == pytest.approx(BCEDiceLoss()(kept_logits, kept_target).item(), rel=1e-5)
    # the default (nothing ignored) is the plain BCE + soft Dice
    t = target.clamp(min=0)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits.detach(), t)
    expected = plain + soft_dice_loss(logits.detach(), t)
    assert BCEDiceLoss()(logits.detach(), t).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="Lovasz"):
        BCEDiceLoss(lovasz_weight=1.0)(logits.detach(), target)
