"""Two builds of one model, held to the same detections on every photo: the reduced-precision contract.

A bf16 or fp16 build is only worth its speed if a user sees the same objects. ``compare_builds``
runs a reference build (fp32) and a candidate (reduced precision) on every photo of a directory
and checks both ways that every box one of them reports (score >= ``report_score``, after NMS)
has a box of the same class in the other with IoU >= ``match_iou`` and score >= ``match_score``.
The matching side is searched before NMS, so a box is found even when a near twin outscored it
there. Beside the verdict it records how far the raw outputs moved: the largest difference of
the box coordinates (model-input pixels) and of the scores (objectness and class probabilities),
and each reported box's agreement, the best IoU a same-class box of the other build reaches, so
a contract that breaks says by how much (``AGREEMENT_IOUS``: matched / total at each IoU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.options import AccuracyOptions
from ..runtime import create_vm, load_artifact
from ..deploy.detect import Detection, detections_for, iou
from .images import model_input
from .photos import list_photos


AGREEMENT_IOUS = (0.5, 0.9)  # the IoUs the box agreement is counted at: "the same object" and the contract's default


@dataclass(frozen=True)
class Unmatched:
    """A reported box the other build has no match for, with the best IoU any same-class box reached."""

    reported_by: str  # "reference" or "candidate"
    class_name: str
    score: float
    box_xyxy: list[float]
    best_iou: float


@dataclass
class PhotoComparison:
    photo: str
    reference_boxes: int
    candidate_boxes: int
    max_box_diff_px: float
    max_score_diff: float
    unmatched: list[Unmatched] = field(default_factory=list)
    box_ious: list[float] = field(default_factory=list)  # per reported box (both builds'), its best IoU in the other


@dataclass
class AccuracyResult:
    """The verdict and the raw-output differences of one candidate against one reference."""

    reference: str
    candidate: str
    options: AccuracyOptions
    photos: list[PhotoComparison]

    @property
    def passed(self) -> bool:
        return all(not p.unmatched for p in self.photos)

    @property
    def max_box_diff_px(self) -> float:
        return max(p.max_box_diff_px for p in self.photos)

    @property
    def max_score_diff(self) -> float:
        return max(p.max_score_diff for p in self.photos)

    def agreement(self) -> dict[str, list[int]]:
        """Over every photo: [matched, total] reported boxes whose best IoU in the other build reaches each of ``AGREEMENT_IOUS``."""
        ious = [i for p in self.photos for i in p.box_ious]
        return {f"iou_{threshold:g}": [sum(i >= threshold for i in ious), len(ious)] for threshold in AGREEMENT_IOUS}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(passed=self.passed, max_box_diff_px=self.max_box_diff_px, max_score_diff=self.max_score_diff, agreement=self.agreement())
        return data

    def summary(self) -> str:
        lines = [
            f"{p.photo}: {p.reference_boxes} reference / {p.candidate_boxes} candidate boxes, "
            f"{len(p.unmatched)} unmatched, max box diff {p.max_box_diff_px:.3g} px, max score diff {p.max_score_diff:.3g}"
            for p in self.photos
        ]
        lines += [
            f"  unmatched in {p.photo}: {u.reported_by} {u.class_name} {u.score:.2f} (best IoU {u.best_iou:.2f})"
            for p in self.photos
            for u in p.unmatched
        ]
        verdict = "holds" if self.passed else "BROKEN"
        agreement = ", ".join(f"{m}/{t} at IoU >= {key.removeprefix('iou_')}" for key, (m, t) in self.agreement().items())
        lines.append(
            f"accuracy contract {verdict} on {len(self.photos)} photos: max box diff {self.max_box_diff_px:.3g} px, "
            f"max score diff {self.max_score_diff:.3g}; boxes matched {agreement}"
        )
        return "\n".join(lines)


def best_ious(reported: list[Detection], pool: list[Detection]) -> list[float]:
    """Per box of ``reported``, the best IoU of a same-class box in ``pool`` (0 where there is none)."""
    best = []
    for det in reported:
        same_class = np.array([d.box_xyxy for d in pool if d.class_id == det.class_id]).reshape(-1, 4)
        best.append(float(iou(np.array(det.box_xyxy), same_class).max(initial=0.0)))
    return best


def unmatched_boxes(reported: list[Detection], pool: list[Detection], match_iou: float, reported_by: str) -> list[Unmatched]:
    """The boxes of ``reported`` with no same-class box in ``pool`` at IoU >= ``match_iou``."""
    return [
        Unmatched(reported_by, det.class_name, det.score, det.box_xyxy, best)
        for det, best in zip(reported, best_ious(reported, pool))
        if best < match_iou
    ]


def compare_outputs(
    photo: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    meta: dict[str, Any],
    image_hw: tuple[int, int],
    letterbox: bool,
    options: AccuracyOptions = AccuracyOptions(),
) -> PhotoComparison:
    """The contract on one photo, from the two builds' raw [1, N, 5 + C] outputs."""
    if reference.shape != candidate.shape:
        raise UserError(f"the builds' outputs differ in shape ({reference.shape} vs {candidate.shape}); compare builds of one model")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))

    def reported(output: np.ndarray) -> list[Detection]:
        return detections_for(output, meta, image_hw, options.report_score, options.nms_iou, letterbox)

    def pool(output: np.ndarray) -> list[Detection]:
        return detections_for(output, meta, image_hw, options.match_score, options.nms_iou, letterbox, nms=False)

    ref_boxes, cand_boxes = reported(reference), reported(candidate)
    ref_pool, cand_pool = pool(reference), pool(candidate)
    missing = unmatched_boxes(ref_boxes, cand_pool, options.match_iou, "reference")
    missing += unmatched_boxes(cand_boxes, ref_pool, options.match_iou, "candidate")
    return PhotoComparison(
        photo=photo,
        reference_boxes=len(ref_boxes),
        candidate_boxes=len(cand_boxes),
        max_box_diff_px=float(diff[..., :4].max()),
        max_score_diff=float(diff[..., 4:].max()),
        unmatched=missing,
        box_ious=best_ious(ref_boxes, cand_pool) + best_ious(cand_boxes, ref_pool),
    )


def compare_builds(
    reference_dir: Path,
    candidate_dir: Path,
    photo_dir: Path,
    input_scale: float,
    letterbox: bool,
    options: AccuracyOptions = AccuracyOptions(),
) -> AccuracyResult:
    """Run both artifacts on every photo in ``photo_dir`` and hold them to the contract."""
    photos = list_photos(Path(photo_dir))
    if not photos:
        raise UserError(f"no .jpg/.jpeg/.png photos in {photo_dir}; run `yolov3-tvm photos` for the samples")
    reference, candidate = load_artifact(Path(reference_dir)), load_artifact(Path(candidate_dir))
    if reference.input_shape != candidate.input_shape:
        raise UserError(
            f"{reference_dir} takes {reference.input_shape} but {candidate_dir} takes {candidate.input_shape}; "
            "compare two builds of one model at one size"
        )
    ref_vm, cand_vm = create_vm(reference), create_vm(candidate)
    compared = []
    for photo in photos:
        data, image = model_input(reference.input_shape, reference.meta["input_dtype"], photo, input_scale, letterbox=letterbox)
        compared.append(
            compare_outputs(
                photo.name, ref_vm.run(data)[0], cand_vm.run(data)[0], reference.meta, (image.height, image.width),
                letterbox, options,
            )
        )
    return AccuracyResult(str(reference_dir), str(candidate_dir), options, compared)
