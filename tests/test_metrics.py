import numpy as np
import pytest

from maskseg.evaluate import metrics as M


def test_hand_computed_single_image():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True  # 8 truth pixels
    pred = np.zeros((4, 4), bool)
    pred[1:3] = True  # 8 predicted pixels, 4 of them right
    c = M.confusion(pred, truth)
    assert (c.tp[0], c.fp[0], c.fn[0], c.tn[0]) == (4, 4, 4, 4)
    assert M.iou(c) == pytest.approx(4 / 12)
    assert M.dice(c) == pytest.approx(8 / 16)
    assert M.precision(c) == pytest.approx(0.5)
    assert M.recall(c) == pytest.approx(0.5)
    assert M.accuracy(c) == pytest.approx(8 / 16)


def test_mean_over_images_differs_from_pooled():
    # image A: tiny mask, half right; image B: large mask, all right
    ta = np.zeros((10, 10), bool)
    ta[0, :2] = True
    pa = np.zeros((10, 10), bool)
    pa[0, 0] = True
    tb = np.ones((10, 10), bool)
    c = M.confusion(np.stack([pa, tb]), np.stack([ta, tb]))
    assert M.iou(c, "none") == pytest.approx([0.5, 1.0])
    assert M.iou(c, "mean") == pytest.approx(0.75)
    assert M.iou(c, "pooled") == pytest.approx(101 / 102)
    assert M.dice(c, "none") == pytest.approx([2 / 3, 1.0])


def test_empty_rules():
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    both_empty = M.confusion(empty, empty)
    for f in (M.iou, M.dice, M.precision, M.recall, M.accuracy):
        assert f(both_empty) == 1.0
    missed = M.confusion(empty, full)  # predicted nothing, truth everywhere
    assert M.iou(missed) == 0.0
    assert M.precision(missed) == 0.0
    assert M.recall(missed) == 0.0
    spurious = M.confusion(full, empty)  # predicted everywhere, truth empty
    assert M.iou(spurious) == 0.0
    assert M.recall(spurious) == 0.0
    assert M.accuracy(spurious) == 0.0


def test_counts_concatenate_and_summarize():
    a = M.confusion(np.ones((2, 2), bool), np.ones((2, 2), bool))
    b = M.confusion(np.zeros((2, 2), bool), np.ones((2, 2), bool))
    c = M.empty_counts() + a + b
    assert len(c) == 2
    s = M.summarize(c)
    assert s["iou"] == pytest.approx(0.5)
    assert s["iou_std"] == pytest.approx(0.5)
    assert s["iou_pooled"] == pytest.approx(0.5)
    assert s["n_images"] == 2


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        M.confusion(np.zeros((2, 2), bool), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="reduction"):
        M.iou(M.confusion(np.zeros((2, 2)), np.zeros((2, 2))), "sum")


def test_concat_joins_per_image_counts_in_order():
    a = M.confusion(np.ones((2, 2), bool), np.ones((2, 2), bool))
    b = M.confusion(np.zeros((2, 2), bool), np.ones((2, 2), bool))
    c = M.concat([a, b, a])
    assert list(c.tp) == [4, 0, 4] and list(c.fn) == [0, 4, 0]
    assert M.iou(c, "none").tolist() == [1.0, 0.0, 1.0]
    assert len(M.concat([])) == 0
