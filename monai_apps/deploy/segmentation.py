"""DICOM SEG segment descriptions (SNOMED CT codes) and algorithm identification from a bundle's metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .bundle_model import BundleModel, ModelError

__all__ = ["SEGMENT_CODES", "SegmentCode", "check_segment_channels", "model_info", "segment_descriptions"]


@dataclass(frozen=True)
class SegmentCode:
    """What a segment is, in SNOMED CT: category, type and an optional anatomic region.

    Attributes:
        label: the Segment Label written in the SEG (DICOM LO, at most 64 characters).
        category: (code value, meaning) of the Segmented Property Category.
        type: (code value, meaning) of the Segmented Property Type.
        region: (code value, meaning) of the Anatomic Region, for a lesion inside an organ.
    """

    label: str
    category: tuple[str, str]
    type: tuple[str, str]
    region: tuple[str, str] | None = None


_ORGAN = ("91772007", "Organ")
_ABNORMAL = ("49755003", "Morphologically Abnormal Structure")
#: SNOMED CT codes of the structures the bundles segment, by the bundles' channel names
SEGMENT_CODES: dict[str, SegmentCode] = {
    "liver": SegmentCode("Liver", _ORGAN, ("10200004", "Liver")),
    "liver tumour": SegmentCode("Liver tumour", _ABNORMAL, ("108369006", "Neoplasm"), ("10200004", "Liver")),
    "spleen": SegmentCode("Spleen", _ORGAN, ("78961009", "Spleen")),
    "kidney_left": SegmentCode("Left kidney", _ORGAN, ("18639004", "Left kidney")),
    "kidney_right": SegmentCode("Right kidney", _ORGAN, ("9846003", "Right kidney")),
    "bowel": SegmentCode("Bowel", _ORGAN, ("113276009", "Intestine")),
}


def check_segment_channels(model: BundleModel, expected: Sequence[str], output: str = "pred") -> None:
    """Refuse a model whose output channels are not the segments an app writes.

    Raises:
        ModelError: naming the model, the channels it has and the ones the app needs.
    """
    channels = model.output_channels(output)
    got = [channels.get(i, "?") for i in range(1, len(expected) + 1)]
    if got != list(expected) or len(channels) != len(expected) + 1:
        raise ModelError(
            f"{model.weights}: bundle {model.name!r} outputs {dict(sorted(channels.items()))}, "
            f"but this app writes the segments {list(expected)}"
        )


def _code(pair: tuple[str, str]):
    from pydicom.sr.coding import Code

    return Code(pair[0], "SCT", pair[1])


def segment_descriptions(
    model: BundleModel, bundle_id: str, names: Sequence[str], codes: Mapping[str, SegmentCode] = SEGMENT_CODES
) -> list:
    """The SDK's ``SegmentDescription`` list (segment numbers 1, 2, ... in order of ``names``).

    The Algorithm Identification of every segment names the bundle (its id, e.g. ``liver_tumor_ct_segmentation``)
    and its metadata version; the algorithm family is Artificial Intelligence.
    """
    from monai.deploy.operators.dicom_seg_writer_operator import SegmentDescription
    from pydicom.sr.codedict import codes as dcm_codes

    out = []
    for name in names:
        c = codes[name]
        out.append(
            SegmentDescription(
                segment_label=c.label,
                segmented_property_category=_code(c.category),
                segmented_property_type=_code(c.type),
                algorithm_name=bundle_id[:64],
                algorithm_version=model.version[:64],
                algorithm_family=dcm_codes.DCM.ArtificialIntelligence,
                anatomic_regions=[_code(c.region)] if c.region else None,
            )
        )
    return out


def model_info(model: BundleModel, bundle_id: str):
    """Contributing Equipment (IHE AIR): creator, bundle id, version, and a Device UID derived from the weights."""
    from monai.deploy.operators.dicom_utils import ModelInfo
    from pydicom.uid import generate_uid

    digest = hashlib.sha256()
    with open(model.weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return ModelInfo(
        creator=str(model.metadata.get("authors", ""))[:64],
        name=bundle_id[:64],
        version=model.version[:16],
        uid=str(generate_uid(entropy_srcs=[bundle_id, model.version, digest.hexdigest()])),
    )
