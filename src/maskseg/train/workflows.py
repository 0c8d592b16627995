"""Training workflows the CLI calls: train, cross-validate, fit the presence gate.

``evaluate_predictor`` and ``format_summary_table`` live in ``maskseg.evaluate.evaluation`` (no
PyTorch) and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from maskseg.config import Config, differing_options, load_config, resume_config, save_config
from maskseg.data.cache import PairCache, training_cache
from maskseg.data.pairs import PairScan, Sample, find_pairs
from maskseg.data.splits import SplitData, Splits, check_same_pairs, load_split, pairs_digest
from maskseg.evaluate import metrics as M
from maskseg.evaluate.evaluation import evaluate_predictor, format_summary_table
from maskseg.files import atomic_write_bytes, is_within
from maskseg.models import complete_params
from maskseg.pipeline.predictor import Predictor
from maskseg.train import distributed as D
from maskseg.train.dataset import SegmentationDataset
from maskseg.train.engine import BEST_WEIGHTS, CHECKPOINT, batch_size, evaluate, fit
from maskseg.train.gate import GateConfig
from maskseg.train.lowworn import LowWornConfig

log = logging.getLogger(__name__)

CONFIG_YAML = "config.yaml"
SPLITS_JSON = "splits.json"
SUMMARY_JSON = "summary.json"
CACHE_DIR = "cache"


@dataclasses.dataclass
class _RunData:
    """What a run trains and scores on: the training rows at the model's size (cached) and
    the decoded pairs it scores at their own resolution (validation folds, test split)."""

    cfg: Config
    splits: Splits
    cache: PairCache
    scored: SplitData

    def train_set(self, ids: list[str], fold: int) -> SegmentationDataset:
        """The training rows of these pairs (each ``pair_repeat`` times); with
        ``composites``, the composited windows made from them and the photos of the same
        part of the faces' split (``fold``: the validation fold held out, -1 none); with
        ``pseudo``, the teacher-labelled crops of that folder."""
        tc, d = self.cfg.train, self.cfg.data
        c = self.cache
        rows = np.tile(c.rows(ids), max(1, d.pair_repeat))
        # (ids, images, masks, whether the masks are 0-255 probabilities already)
        extra: list[tuple[list[str], np.ndarray, np.ndarray, bool]] = []
        if d.composites > 0:
            made = _composites(self.cfg, self.splits, ids, fold)
            names = [f"composite#{i}" for i in range(len(made.images))]
            extra.append((names, made.images, made.masks, False))
        if d.pseudo:
            from maskseg.train.pseudo import is_soft, read_pseudo

            extra.append((*read_pseudo(d.pseudo, d.image_size), is_soft(d.pseudo)))
        if not extra:
            return SegmentationDataset.from_arrays(
                c.ids, c.images, c.masks, rows, tc.augment, tc.seed, pad_label=tc.pad_label
            )
        n = len(c.ids)
        all_ids = list(c.ids) + [i for names, *_ in extra for i in names]
        images = np.concatenate([np.asarray(c.images)] + [im for _, im, *_ in extra])
        # soft pseudo-labels are 0-255 probabilities: every 0/1 mask is put on that scale
        up = np.uint8(255 if any(soft for *_, soft in extra) else 1)
        masks = np.concatenate(
            [np.asarray(c.masks, np.uint8) * up]
            + [m if soft else np.asarray(m, np.uint8) * up for _, _, m, soft in extra]
        )
        rows = np.concatenate([rows, n + np.arange(len(all_ids) - n)])
        return SegmentationDataset.from_arrays(
            all_ids, images, masks, rows, tc.augment, tc.seed, int(up), tc.pad_label
        )

    def skipped(self) -> list[str]:
        return [f"{pid}: {why}" for pid, why in self.scored.skipped + self.cache.skipped]


def check_run_folder(run_dir: Path, data_root: str | Path, resume: bool) -> None:
    """Refuse, before anything is written, a run folder inside the data folder (its curves,
    weights and cache would sit among the pairs, and could replace one) and, without
    ``resume``, a folder that already holds a run (starting afresh would replace its weights,
    metrics and checkpoint)."""
    if data_root and is_within(run_dir, data_root):
        raise ValueError(
            f"{run_dir}: the run folder is inside the data folder {data_root}; "
            "give another --output"
        )
    if not resume:
        held = [n for n in (CONFIG_YAML, CHECKPOINT, BEST_WEIGHTS) if (run_dir / n).exists()]
        if held:
            raise ValueError(
                f"{run_dir} already holds a run ({', '.join(held)}); continue it with --resume, "
                "or give a new --output folder"
            )


def check_startable(cfg: Config) -> None:
    """Refuse, before the run folder is written, settings this run's processes cannot train
    with: a batch that does not split evenly over the ``torchrun`` processes, ``sync_bn`` off
    CUDA, in one process too, where it would do nothing (a refused run must not leave a folder
    that only ``--resume`` with the same values would open)."""
    D.check_sync_bn(cfg.train.sync_bn, D.device_for(cfg.train.device))
    if D.world() > 1:  # the check fit() meets, made before anything is written
        batch_size(cfg.train.batch_size, cfg.train.batch_size, D.world())


def _prepare_run(
    cfg: Config,
    run_dir: Path,
    resume: bool,
    overrides: dict | None = None,
    val_fold: int | None = None,
    cache_dir: str | Path | None = None,
) -> _RunData:
    """Write (or, on resume, reload and reconcile) the run's config and split; cache and decode
    the data.

    On resume the run keeps its own config; ``overrides`` (the options given on the command
    line) may only change what ``config.RESUMABLE`` allows, anything else is refused by name.
    Rank 0 alone reads and writes the run folder and hands config and split to the others.
    Every non-test pair goes into the training cache (``cache_dir``, default ``RUN/cache``;
    built by each machine's first process); the test split and the validation fold
    ``val_fold`` (None: every fold, for cross-validation; -1: none) are decoded whole, for
    scoring at their own resolution.
    """

    scans: dict[str, PairScan] = {}

    def scan_of(root: str | Path) -> PairScan:
        """``find_pairs(root)``, listed once per folder: a large folder costs seconds."""
        key = str(root)
        if key not in scans:
            scans[key] = find_pairs(root)
        return scans[key]

    def run_settings() -> tuple[Config, Splits]:
        cfg_path = run_dir / CONFIG_YAML
        splits_path = run_dir / SPLITS_JSON
        check_run_folder(run_dir, cfg.data.root, resume)
        c = cfg
        if resume and cfg_path.exists():
            c = resume_config(load_config(cfg_path), overrides or {})
            if c.data.pairs_digest:  # --data may move (a copy), not change the pairs
                check_same_pairs([p.id for p in scan_of(c.data.root).pairs], c.data, c.data.root)
        check_startable(c)
        # every architecture parameter written out: the saved config says what the run used
        c = dataclasses.replace(c, model=complete_params(c.model))
        saved = Splits.load(splits_path) if resume and splits_path.exists() else None
        splits = load_split(c.data.root, c.data, [], saved, scan_of(c.data.root)).splits
        run_dir.mkdir(parents=True, exist_ok=True)  # only once the run can start
        if not c.data.pairs_digest:  # what this run's split is made over, kept with its files
            digest = pairs_digest([*splits.trainval, *splits.test])
            c = dataclasses.replace(c, data=dataclasses.replace(c.data, pairs_digest=digest))
        save_config(c, cfg_path)
        splits.save(splits_path)
        return c, splits

    cfg, splits = D.on_main(run_settings)
    if D.world() > 1:  # every process must have been given what rank 0 runs with
        differ = differing_options(cfg, overrides or {})
        if D.all_reduce_sum(np.array([len(differ)], np.int64))[0]:
            raise ValueError(
                f"rank {D.rank()}: the processes were started with different options"
                + (f"; here {'; '.join(differ)}" if differ else "")
                + ": start every node with the same flags"
            )
    scan = scan_of(cfg.data.root)
    if not scan.pairs:
        raise ValueError(f"{cfg.data.root}: no image/mask pairs")
    trainval = set(splits.trainval)
    pairs = [p for p in scan.pairs if p.id in trainval]
    where = Path(cache_dir) if cache_dir is not None else run_dir / CACHE_DIR
    size, grow = cfg.data.image_size, cfg.data.scene_windows
    cache = D.local_first(lambda: training_cache(pairs, size, where, grow))
    if val_fold is None:
        val_ids = splits.trainval
    else:
        val_ids = splits.train_val(val_fold)[1] if val_fold >= 0 else []
    ids = val_ids + splits.test
    data = load_split(cfg.data.root, cfg.data, ids, splits, scan)
    if not cache.ids and not data.samples:
        raise ValueError(f"{cfg.data.root}: no readable image/mask pairs")
    return _RunData(cfg, splits, cache, data)


def _scores(model, samples: list[Sample], cfg: Config) -> dict[str, float]:
    counts, _ = evaluate(model, samples, cfg, D.device_for(cfg.train.device))
    return M.summarize(counts)


def train_run(
    cfg: Config,
    run_dir: str | Path,
    val_fold: int = 0,
    resume: bool = False,
    checkpoint_interval: float = 60.0,
    overrides: dict | None = None,
    cache_dir: str | Path | None = None,
) -> dict:
    """Train one model. Validation = fold ``val_fold`` (early stopping); -1 trains on every
    non-test pair for the configured epochs. The held-out test split is scored at the end only.
    ``overrides``: the options given explicitly, checked against the run's own on resume.

    Under ``torchrun`` every process calls this; they train one model together and rank 0
    writes the run folder (``maskseg.train.distributed``).
    """
    run_dir = Path(run_dir)
    with D.session(cfg.train.device):
        data = _prepare_run(cfg, run_dir, resume, overrides, val_fold, cache_dir)
        cfg, splits = data.cfg, data.splits
        if val_fold < 0:
            train_ids, val_ids = splits.trainval, []
        else:
            train_ids, val_ids = splits.train_val(val_fold)
        train = data.train_set(train_ids, val_fold)
        val = data.scored.take(val_ids)
        res = fit(cfg, train, val, run_dir, resume, checkpoint_interval)
        test = data.scored.take(splits.test)
        summary = {
            "run_dir": str(run_dir),
            "val_fold": val_fold,
            "n_train": len(data.cache.rows(train_ids, scenes=False)),
            "n_scene_windows": len(data.cache.rows(train_ids))
            - len(data.cache.rows(train_ids, scenes=False)),
            "n_composites": sum(i.startswith("composite#") for i in train.ids),
            "n_pseudo": sum(i.startswith("pseudo#") for i in train.ids),
            "n_rows": len(train),
            "n_val": len(val),
            "n_test": len(test),
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "world_size": D.world(),
            "skipped_pairs": data.skipped(),
            "val": _scores(res.model, val, cfg) if val_ids else {},
            "test": _scores(res.model, test, cfg) if splits.test else {},
            "weights": str(run_dir / BEST_WEIGHTS),
            "cache": str(data.cache.folder),
        }
        if D.is_main():
            atomic_write_bytes(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2).encode())
    return summary


def cross_validate(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    checkpoint_interval: float = 60.0,
    only_folds: list[int] | None = None,
    overrides: dict | None = None,
    cache_dir: str | Path | None = None,
) -> dict:
    """Train each of the K folds; report per-fold and mean ± std scores on each fold's
    validation part and on the held-out test split. Finished folds are kept on resume.

    ``only_folds`` trains just those folds (e.g. one per process or machine, same run folder);
    the summary is written by whichever call finds every fold finished, so a last
    ``--resume`` without ``only_folds`` gathers them. Under ``torchrun`` the processes train
    each fold together; the folds share one data cache (``RUN/cache``).
    """
    run_dir = Path(run_dir)
    with D.session(cfg.train.device):
        data = _prepare_run(cfg, run_dir, resume or bool(only_folds), overrides, None, cache_dir)
        return _cross_validate(data, run_dir, resume, checkpoint_interval, only_folds)


def _cross_validate(
    data: _RunData,
    run_dir: Path,
    resume: bool,
    checkpoint_interval: float,
    only_folds: list[int] | None,
) -> dict:
    cfg, splits = data.cfg, data.splits
    n_folds = len(splits.folds)
    for k in only_folds or []:
        if not 0 <= k < n_folds:
            raise ValueError(f"fold {k} out of range 0..{n_folds - 1}")

    def finished() -> dict[int, dict]:
        return {
            k: json.loads((run_dir / f"fold{k}" / SUMMARY_JSON).read_text())
            for k in range(n_folds)
            if (resume or only_folds) and (run_dir / f"fold{k}" / SUMMARY_JSON).exists()
        }

    done = D.on_main(finished)
    folds = []
    for k in range(n_folds):
        if k in done:
            folds.append(done[k])
            continue
        if only_folds and k not in only_folds:
            continue
        log.info("fold %d (folds 0-%d)", k, n_folds - 1)  # as --only-fold numbers them
        train_ids, val_ids = splits.train_val(k)
        val = data.scored.take(val_ids)
        fold_dir = run_dir / f"fold{k}"
        res = fit(cfg, data.train_set(train_ids, k), val, fold_dir, resume, checkpoint_interval)
        fold = {  # pairs used, as `train` counts them: unreadable ones left out
            "fold": k,
            "n_train": len(data.cache.rows(train_ids, scenes=False)),
            "n_val": len(val),
            "best_epoch": res.best_epoch,
            "val": _scores(res.model, val, cfg),
            "test": _scores(res.model, data.scored.take(splits.test), cfg),
        }
        if D.is_main():
            atomic_write_bytes(fold_dir / SUMMARY_JSON, json.dumps(fold, indent=2).encode())
        folds.append(fold)
    if len(folds) < n_folds:
        return {"folds": folds, "complete": False}
    summary = {
        "folds": folds,
        "n_test": len(data.scored.take(splits.test)),
        "world_size": D.world(),
        "skipped_pairs": data.skipped(),
    }
    for part in ("val", "test"):
        for key in ("iou", "dice", "iou_pooled"):
            vals = np.array([f[part][key] for f in folds])
            summary[f"{part}_{key}_mean"] = float(vals.mean())
            summary[f"{part}_{key}_std"] = float(vals.std())
    if D.is_main():
        atomic_write_bytes(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2).encode())
        atomic_write_bytes(run_dir / "cv_results.md", format_cv_table(summary).encode())
    return summary


def format_cv_table(summary: dict) -> str:
    head = (
        "| fold | train | val | best epoch | val IoU | val Dice | test IoU | test Dice "
        "| test pooled IoU |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {f['fold']} | {f['n_train']} | {f['n_val']} | {f['best_epoch']} | "
        f"{f['val']['iou']:.4f} | {f['val']['dice']:.4f} | {f['test']['iou']:.4f} | "
        f"{f['test']['dice']:.4f} | {f['test']['iou_pooled']:.4f} |"
        for f in summary["folds"]
    ]
    s = summary
    rows.append(
        f"| mean ± std | | | | {s['val_iou_mean']:.4f} ± {s['val_iou_std']:.4f} | "
        f"{s['val_dice_mean']:.4f} ± {s['val_dice_std']:.4f} | "
        f"{s['test_iou_mean']:.4f} ± {s['test_iou_std']:.4f} | "
        f"{s['test_dice_mean']:.4f} ± {s['test_dice_std']:.4f} | "
        f"{s['test_iou_pooled_mean']:.4f} ± {s['test_iou_pooled_std']:.4f} |"
    )
    return head + "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- presence gate


def gate_model(
    model_path: str | Path,
    faces_dir: str | Path,
    data_root: str | Path,
    output: str | Path,
    val_fold: int = -1,
    gate: GateConfig | None = None,
    n_scenes: int = 400,
    low_worn: LowWornConfig | None = None,
    photo_negatives: int = 0,
    face_check: bool = False,
) -> dict:
    """Fit the mask-presence gate of a trained model and write the gated weight file.

    Training crops: the faces of the model's split that the model's own training could have
    used (every non-test fold, or all but ``val_fold``), with their photo labels, and the
    model's MSFD training pairs as further masked faces, plus the crops the scene path cuts
    from ``n_scenes`` synthetic scenes of those faces (``gate.scene_crops``: its false
    detections are negatives). With ``low_worn``, masks worn low composited from those
    pairs onto the split's photos without a mask (``maskseg.train.lowworn``) are further
    positives. With ``photo_negatives`` N, every detection the scene path keeps in up to N of
    the split's whole photos without a mask is a further negative (``gate.photo_crops``:
    collars, hair, hands). The faces' test split is never read; with ``val_fold`` its faces'
    rates are reported.
    """
    from maskseg.data.faces import face_splits, load_crops, load_index
    from maskseg.evaluate.presence_rates import presence_rates
    from maskseg.train.gate import crop_features, fit_head, photo_crops, scene_crops

    gate = GateConfig() if gate is None else gate
    onnx_file = Path(model_path).suffix.lower() == ".onnx"
    if onnx_file:
        from maskseg.pipeline.modelfile import read_onnx_info
        from maskseg.train.gate_onnx import feature_extractor

        cfg, info = read_onnx_info(model_path)
        net = None
        # a pooled head is refitted in place (same shapes); a masked one is built in the graph
        m = cfg.model
        if not m.presence or (
            gate.features == "pooled"
            and (m.presence_hidden != gate.hidden or m.presence_features != "pooled")
        ):
            raise ValueError(
                f"{model_path}: refit an ONNX gate of the same shape only, or build a masked one "
                f"(its head: {cfg.model.presence_features} features, "
                f"{cfg.model.presence_hidden} hidden units; asked: {gate.features}, {gate.hidden})"
            )
    else:
        from maskseg.pipeline.backends.pytorch import load as load_torch

        backend, cfg, info = load_torch(model_path, device="cpu", precision="fp32")
        net = backend.model
    if cfg.model.members != 1 or cfg.model.flip_tta:
        raise ValueError(f"{model_path}: gate single models, then pack them")
    splits = face_splits(load_index(faces_dir), cfg.data)
    if val_fold >= 0:
        train_ids, val_ids = splits.train_val(val_fold)
    else:
        train_ids, val_ids = splits.trainval, []
    crops = load_crops(faces_dir, train_ids)
    pairs = load_split(data_root, cfg.data, "trainval")
    pair_ids = pairs.splits.train_val(val_fold)[0] if val_fold >= 0 else pairs.splits.trainval
    train_pairs = pairs.take(pair_ids)
    positives = [c.image for c in crops if c.mask] + [s.image for s in train_pairs]
    negatives = [c.image for c in crops if not c.mask]
    # Crops of the scene path: detector-framed faces and its false detections (hard negatives)
    masked = [(s.image, s.mask) for s in train_pairs] + [(c.image, None) for c in crops if c.mask]
    scene_pos, scene_neg = scene_crops(masked, negatives, n_scenes, size=cfg.data.image_size)
    photo_neg: list[np.ndarray] = []
    n_photos = 0
    if photo_negatives > 0:
        photo_neg, n_photos = photo_crops(
            _unmasked_photos(faces_dir, train_ids, any_status=True),
            cfg.data.image_size,
            photo_negatives,
        )
    low: list[np.ndarray] = []
    low_figures: dict = {}
    if low_worn is not None and low_worn.n > 0:
        low, low_figures = _low_worn(faces_dir, train_ids, train_pairs, low_worn, cfg)
    size = cfg.data.image_size
    if onnx_file:
        from maskseg.models.registry import create_model

        fresh = create_model(cfg.model).make_presence_head(gate.hidden, gate.features)
        source = model_path
        if gate.features == "masked":  # the graph's features as the new head will read them
            from maskseg.train.gate_onnx import needs_masked_build, with_masked_features

            if needs_masked_build(model_path, fresh):
                source = with_masked_features(model_path, fresh, size)
        features = feature_extractor(source, size)  # one session for every crop
    else:
        from maskseg.train.gate import encoder_features

        def features(images: list[np.ndarray]) -> np.ndarray:
            return encoder_features(net, images, size, kind=gate.features)

        fresh = net.make_presence_head(gate.hidden, gate.features)
    feats, labels = crop_features(
        features, positives + scene_pos + low, negatives + scene_neg + photo_neg, gate
    )
    head, figures = fit_head(feats, labels, fresh, gate)
    figures.update(scene_positives=len(scene_pos), scene_negatives=len(scene_neg))
    if photo_negatives > 0:
        figures.update(photo_negatives=len(photo_neg), negative_photos=n_photos)
    if low_worn is not None:
        figures.update(low_figures, low_worn=dataclasses.asdict(low_worn))
    cfg = cfg.replace(
        "model", presence=True, presence_hidden=gate.hidden, presence_features=gate.features
    )
    summary = {
        "gate": {
            **figures,
            "config": dataclasses.asdict(gate),
            "val_fold": val_fold,
            "faces": str(faces_dir),
        }
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    if onnx_file:
        _write_onnx_gate(model_path, output, head, summary)
        predictor = Predictor.load(output) if val_ids else None
    else:
        from maskseg.train.checkpoint import save_weights

        net.attach_presence(head)
        save_weights(output, net, cfg, {**info, **summary})
        predictor = (
            Predictor.from_model(net, cfg, "cpu", precision=cfg.train.precision)
            if val_ids
            else None
        )
    if predictor is not None:
        summary["gate"]["val"] = presence_rates(predictor, load_crops(faces_dir, val_ids)).as_dict()
    if face_check:
        from maskseg.pipeline.face_check import check_file_beside
        from maskseg.train.face_check import fit_face_check

        check = check_file_beside(output)
        summary["face_check"] = {
            **fit_face_check(output, faces_dir, train_ids, check),
            "file": str(check),
        }
    return summary


def _write_onnx_gate(model_path, output, head, summary) -> None:
    """The ONNX model with the refitted head (a masked one built in the graph where needed,
    ``with_head``), its metadata's gate figures replaced."""
    import onnx

    from maskseg.files import atomic_write_bytes
    from maskseg.train.gate_onnx import with_head

    model = onnx.load_from_string(with_head(model_path, head))
    for p in model.metadata_props:
        if p.key == "metrics":
            metrics = json.loads(p.value)
            metrics["gate"] = summary["gate"]
            p.value = json.dumps(metrics)
    atomic_write_bytes(output, model.SerializeToString())


def _unmasked_photos(
    faces_dir: str | Path, ids: Iterable[str], any_status: bool = False
) -> Iterator[np.ndarray]:
    """The readable photos without a mask among ``ids`` of a ``maskseg data faces`` folder,
    read one at a time (unreadable ones passed over); only those a face was cut from unless
    ``any_status``."""
    from maskseg.data.faces import photo_path
    from maskseg.io import ImageReadError, read_image

    wanted = set(ids)
    for entry, path in photo_path(faces_dir):
        if entry.id in wanted and not entry.mask and (any_status or entry.status == "ok"):
            try:
                yield read_image(path)
            except ImageReadError:
                continue


def _composites(cfg: Config, pair_splits: Splits, pair_ids: list[str], fold: int):
    """Composited windows (``maskseg.train.composites``) from these training pairs and the
    photos without a mask of ``cfg.data.composite_faces`` in the same part of their split
    (fold ``fold`` held out; -1: every non-test photo)."""
    from maskseg.data.faces import face_splits, load_index
    from maskseg.train.composites import CompositeConfig, composite_windows

    d = cfg.data
    if not d.composite_faces:
        raise ValueError("data.composites needs data.composite_faces (`maskseg data faces`)")
    fsplits = face_splits(load_index(d.composite_faces), d)
    photo_ids = fsplits.train_val(fold)[0] if fold >= 0 else fsplits.trainval
    pairs = load_split(d.root, d, list(pair_ids), pair_splits)
    return composite_windows(
        [(s.image, s.mask) for s in pairs.take(list(pair_ids))],
        _unmasked_photos(d.composite_faces, photo_ids),
        CompositeConfig(
            n=d.composites,
            scale=(d.composite_scale_min, d.composite_scale_max),
            roomy_share=d.composite_roomy_share,
            whole_masks=d.composite_whole_masks,
            seed=cfg.train.seed,
        ),
        d.image_size,
    )


def _low_worn(faces_dir, train_ids, train_pairs, low_worn, cfg) -> tuple[list, dict]:
    """Composited low-worn positives from the training pairs and training unmasked photos
    (read one at a time: only their shrunk copies are kept)."""
    from maskseg.train.lowworn import low_worn_crops

    made = low_worn_crops(
        [(s.image, s.mask) for s in train_pairs],
        _unmasked_photos(faces_dir, train_ids),
        low_worn,
        cfg.data.image_size,
    )
    return made.crops, made.summary()


__all__ = [
    "cross_validate",
    "evaluate_predictor",
    "format_cv_table",
    "format_summary_table",
    "gate_model",
    "train_run",
]
