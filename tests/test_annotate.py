"""Pictures (maskseg.pipeline.annotate): the overlay's tint by hand, the grid's layout, and
boxes drawn where the faces are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.pipeline.annotate import OVERLAY_COLOUR, annotate, image_grid, overlay
from maskseg.pipeline.scene import Face

GREEN, ORANGE = (40, 220, 90), (255, 150, 0)  # draw_faces: with a mask, without one


def square_mask(h: int = 60, w: int = 80) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[20:40, 30:50] = True
    return mask


def test_overlay_tints_exactly_the_mask_pixels():
    image = np.empty((60, 80, 3), np.uint8)
    image[:] = (110, 50, 20)
    mask = square_mask()
    out = overlay(image, mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert tuple(OVERLAY_COLOUR) == (0, 200, 255)
    # by hand, alpha 0.45 (truncated to uint8):
    # R 0.55 * 110 + 0.45 * 0 = 60.5, G 0.55 * 50 + 0.45 * 200 = 117.5,
    # B 0.55 * 20 + 0.45 * 255 = 125.75
    border = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inside = mask & ~border
    assert inside.sum() == 18 * 18
    assert (out[inside] == (60, 117, 125)).all()
    assert (out[border] == (255, 255, 0)).all()  # the outline: on the mask's edge pixels
    assert (out[~mask] == image[~mask]).all()  # nothing outside the mask changes
    # another alpha, another tint: 0.8 * 110 = 88, 0.8 * 50 + 0.2 * 200 = 80, 16 + 51 = 67
    assert (overlay(image, mask, alpha=0.2)[inside] == (88, 80, 67)).all()
    np.testing.assert_array_equal(overlay(image, np.zeros((60, 80), bool)), image)


def test_image_grid_layout(tmp_path: Path):
    colours = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(255, 255, 0), (0, 255, 255), (9, 9, 9)]]
    rows = [[np.full((30, 20, 3), c, np.uint8) for c in row] for row in colours]
    tile, step, head = 50, 54, 24  # a tile and its 4 px gap; the title line is 16 + 8 px
    image_grid(rows, ["a", "b", "c"], ["", ""], tmp_path / "bare.png", tile=tile)
    bare = cv2.imread(str(tmp_path / "bare.png"))[..., ::-1]
    label_w = 12  # no row titles: only the margin
    assert bare.shape == (head + 2 * step, label_w + 3 * step, 3)
    titles = ["first row\nIoU 0.5", "second"]
    image_grid(rows, ["a", "b", "c"], titles, tmp_path / "grid.png", tile=tile)
    grid = cv2.imread(str(tmp_path / "grid.png"))[..., ::-1]
    assert grid.shape[0] == bare.shape[0]
    label_w = grid.shape[1] - 3 * step  # row titles widen the left margin only
    widest = cv2.getTextSize("first row", cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0]
    assert label_w == widest + 12
    for picture, left in ((bare, 12), (grid, label_w)):
        for r, row in enumerate(colours):
            for c, colour in enumerate(row):
                y, x = head + r * step, left + c * step
                cell = picture[y : y + tile, x : x + tile]  # each tile resized to 50 x 50
                assert (cell == colour).all(), (r, c)
                assert (picture[y : y + tile, x + tile : x + step] == 255).all()  # white gap


def face(box, mask: bool) -> Face:
    return Face(np.array(box, float), 0.9, np.array(box, float), 0.3 if mask else 0.0, mask)


def drawn_near(out: np.ndarray, image: np.ndarray, box, colour) -> None:
    """The box's edges are drawn in ``colour`` (anti-aliased: within 20 per channel) over
    ``image``, whose pixels inside the box are left as they were."""
    x1, y1, x2, y2 = box
    edges = [out[y1, x1 + 5 : x2 - 5], out[y2, x1 + 5 : x2 - 5]]
    edges += [out[y1 + 5 : y2 - 5, x1], out[y1 + 5 : y2 - 5, x2]]
    for edge in edges:
        assert (np.abs(edge.astype(int) - colour) <= 20).all()
    inner = out[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2]
    np.testing.assert_array_equal(inner, image[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2])


def untouched_outside(out: np.ndarray, image: np.ndarray, boxes) -> None:
    """Away from each box (2 px around it, and its label on its patch: 18 px above it, up
    to 130 px wide) ``out`` is ``image``."""
    near = np.zeros(image.shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        near[max(y1 - 18, 0) : y2 + 3, max(x1 - 2, 0) : max(x2 + 3, x1 + 130)] = True
    np.testing.assert_array_equal(out[~near], image[~near])


def test_annotate_draws_boxes_where_the_faces_are():
    image = np.full((200, 300, 3), 90, np.uint8)
    masked, bare = (50, 60, 150, 160), (200, 120, 260, 180)
    out = annotate(image, np.zeros((200, 300), bool), [face(masked, True), face(bare, False)])
    drawn_near(out, image, masked, GREEN)
    drawn_near(out, image, bare, ORANGE)
    untouched_outside(out, image, [masked, bare])
    # the label above a box: its colour, in the 16 px over the box
    label = out[masked[1] - 16 : masked[1], masked[0] : masked[2]]
    assert (np.abs(label.astype(int) - GREEN).sum(axis=2) < 60).any()


def test_annotate_a_reduced_image_scales_faces_and_mask():
    """A photo decoded at half size: the mask and the boxes at the file's size are drawn at
    half their coordinates."""
    image = np.full((100, 150, 3), 90, np.uint8)
    full_mask = np.zeros((200, 300), bool)
    full_mask[120:160, 100:200] = True
    out = annotate(image, full_mask, [face((80, 100, 220, 180), True)], full_width=300)
    assert out.shape == image.shape
    tinted = overlay(image, full_mask[::2, ::2])  # the mask at the decoded size
    assert (tinted[60:80, 50:100] != image[60:80, 50:100]).all()
    drawn_near(out, tinted, (40, 50, 110, 90), GREEN)
    untouched_outside(out, tinted, [(40, 50, 110, 90)])


@pytest.mark.parametrize("shape", [(60, 80), (1, 1)])
def test_overlay_of_a_full_mask(shape):
    image = np.full((*shape, 3), 110, np.uint8)
    out = overlay(image, np.ones(shape, bool))
    assert out.shape == image.shape and (out != image).any(axis=2).all()


def test_overlay_blends_only_the_mask_and_outlines_each_blob_in_place():
    """Two blobs far apart, one in the image's corner: every mask pixel is tinted as the
    whole-image formula says, the outlines sit on each blob's own edge (the bounding-box
    offset), and no pixel outside the mask changes."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    mask = np.zeros((90, 120), bool)
    mask[0:12, 0:15] = True  # the corner
    mask[60:80, 90:110] = True
    out = overlay(image, mask)
    expected = (0.55 * image.astype(np.float32) + 0.45 * OVERLAY_COLOUR).astype(np.uint8)
    # a blob against the picture's edge is outlined along that edge too
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0)
    inside = eroded.astype(bool)
    assert (out[inside] == expected[inside]).all()
    assert (out[mask & ~inside] == (255, 255, 0)).all()
    assert (out[~mask] == image[~mask]).all()
    assert image.flags.writeable and not np.shares_memory(out, image)


def test_labels_that_would_overlap_move_to_their_next_place():
    from maskseg.pipeline.annotate import place_labels

    shape = (200, 300)
    # alone, a label keeps its first place
    assert place_labels([("0.80 mask 56%", [(50, 100), (50, 150)])], shape, 1) == [(50, 100)]
    # two labels wanting the same place: the first keeps it, the second takes its next one
    both = place_labels(
        [("worn correctly", [(50, 100)]), ("0.39 no mask", [(60, 98), (60, 130)])], shape, 1
    )
    assert both == [(50, 100), (60, 130)]
    # side by side, far enough apart: no move
    apart = place_labels([("a", [(10, 100)]), ("b", [(200, 100)])], shape, 1)
    assert apart == [(10, 100), (200, 100)]
    # a place above the picture is moved inside it (baseline under the text's ascent)
    (_, h), _ = cv2.getTextSize("x", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    assert place_labels([("x", [(5, 50)]), ("x", [(5, 50), (5, -20)])], shape, 1)[1] == (5, h + 1)
    # nowhere free: the first candidate all the same
    stuck = place_labels([("x", [(5, 50)]), ("x", [(5, 50), (6, 51)])], shape, 1)
    assert stuck == [(5, 50), (5, 50)]
