"""Synthetic non-contrast head CT with 0 to 3 brain metastases, written as one DICOM CT series per patient.

Each patient is drawn from a seed: head size and shape, skull and scalp thickness, brain atrophy (ventricle size
and the width of the subarachnoid space), grey/white matter contrast, normal hyperdense look-alikes (falx,
superior sagittal sinus, choroid plexus and pineal calcifications, petrous bone of the skull base), head position,
noise level, and for positive patients 1 to 3 metastases. A metastasis is either **hyperdense** (solid, 52-75 HU:
haemorrhagic, melanoma or hypercellular deposits) or **ring-enhancing** (a 62-90 HU rim around a 8-20 HU necrotic
core), 5 to 30 mm across, usually at the grey/white junction, often with vasogenic oedema in the white matter
around it. The anatomy is painted in patient millimetres (:class:`~monai_apps.data.canvas.Canvas`), so sizes do not
depend on the voxel grid, and :func:`~monai_apps.data.scanner.acquire` adds partial-volume blur and noise.

HU values are grounded on the real non-contrast head CT ``invesalius/Cranium_ct.nii.gz`` (see
``../shared/data/real/SOURCES.md``), measured inside a brain mask from HU -50..100 thresholding with 3D erosion,
largest component and dilation, slices 45-94, on a 5x5x3 median-smoothed copy to classify voxels:

* brain parenchyma median 24 HU; grey-matter-like voxels (smoothed >= 32 HU) median 36 HU, white-matter-like
  voxels (smoothed 15-28 HU) median 23 HU;
* CSF in the two largest low-density components (the lateral ventricles) median 1 HU;
* skull (> 300 HU within 11 mm of the brain) median 866 HU (10th-90th percentile 479-1300 HU), 6-9 mm thick;
* image noise (raw minus smoothed, in parenchyma) 6.8 HU standard deviation.

Metastasis and calcification values follow textbook ranges (for example Radiopaedia, "Cerebral metastases":
hyperdense deposits 50-80 HU on non-contrast CT, rim enhancement after contrast; vasogenic oedema 10-20 HU below
normal white matter; physiological calcifications > 100 HU).

Label ids: ``brain`` 90 and ``skull`` 91 are TotalSegmentator ``total`` ids; the other tissues get ids from 220 up
(:data:`HEAD_IDS`).

Example::

    from monai_apps.data.synthetic_head import generate_head_ct, generate_head_cohort

    ct = generate_head_ct(seed=3, n_metastases=2)
    ct.image.shape, ct.label, len(ct.metastases)  # (256, 256, 27), 1, 2
    generate_head_cohort("data/brain_mets", n_patients=60, n_test=40)  # DICOM series + labels.csv
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .canvas import Canvas
from .scanner import acquire
from .writers import atomic_path, write_dicom_series, write_json

__all__ = [
    "HEAD_HU",
    "HEAD_IDS",
    "SyntheticHeadCT",
    "generate_head_ct",
    "generate_head_cohort",
    "patient_seed",
    "read_labels_csv",
]

#: structure ids: TotalSegmentator ``total`` ids for brain and skull, 220+ for the rest.
HEAD_IDS: dict[str, int] = {
    "brain": 90,  # grey matter and deep grey nuclei
    "skull": 91,
    "scalp": 220,
    "subarachnoid_csf": 221,
    "ventricle": 222,
    "white_matter": 223,
    "falx": 224,
    "venous_sinus": 225,
    "calcification": 226,
    "metastasis": 227,
    "oedema": 228,
    "sinus_air": 229,
}
#: ids whose union is the brain parenchyma (what TotalSegmentator calls ``brain``, without the CSF spaces).
BRAIN_PARTS = ("brain", "white_matter", "metastasis", "oedema")

#: mean HU and between-subject SD of the means (see the module docstring for the sources).
HEAD_HU: dict[str, tuple[float, float]] = {
    "grey_matter": (36.0, 2.5),
    "white_matter": (24.0, 2.5),
    "deep_grey": (33.0, 2.5),
    "csf": (2.0, 2.0),
    "cortical_bone": (870.0, 70.0),
    "diploe": (550.0, 60.0),
    "petrous_bone": (1250.0, 100.0),
    "scalp": (35.0, 4.0),
    "falx": (55.0, 5.0),
    "venous_sinus": (55.0, 5.0),
    "calcification": (260.0, 60.0),
    "air": (-1000.0, 0.0),
    "sinus_air": (-900.0, 30.0),
}


def patient_seed(seed: int, index: int) -> int:
    """The seed of patient ``index`` of a cohort drawn with ``seed``."""
    return int(seed) * 100019 + int(index)


@dataclass
class SyntheticHeadCT:
    """One generated head CT.

    Attributes:
        image: int16 HU volume ``(X, Y, Z)``; ``Z`` runs from the skull base to the vertex.
        labels: uint8 structure ids (:data:`HEAD_IDS`), same shape.
        affine: 4x4 NIfTI (RAS) affine.
        seed: the seed it was drawn from.
        metastases: one dict per metastasis: ``kind`` (hyperdense or ring), ``center_mm`` (LPS), ``diameter_mm``,
            ``hu`` (mean of the solid part or rim), ``oedema`` (bool), ``voxels`` and ``slices`` (the ``Z`` indices
            it covers).
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    seed: int
    metastases: list[dict] = field(default_factory=list)

    @property
    def label(self) -> int:
        """Patient label: 1 when the scan holds at least one metastasis."""
        return int(len(self.metastases) > 0)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of a structure by name; ``brain`` is the whole parenchyma (grey, white, lesions)."""
        if name == "brain":
            return np.isin(self.labels, [HEAD_IDS[p] for p in BRAIN_PARTS])
        if name not in HEAD_IDS:
            raise KeyError(f"unknown structure {name!r}; known: {', '.join(HEAD_IDS)}")
        return self.labels == HEAD_IDS[name]


class _Head:
    """Random anatomy of one head (millimetres, head frame) and its painting onto a canvas."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.hu = {name: float(rng.normal(m, sd)) for name, (m, sd) in HEAD_HU.items()}
        self.brain = np.array([rng.uniform(62, 72), rng.uniform(78, 90), rng.uniform(56, 66)])  # semi-axes x, y, z
        self.csf_gap = float(rng.uniform(1.5, 4.0))  # subarachnoid space (grows with atrophy)
        self.skull_t = float(rng.uniform(5.0, 8.5))
        self.scalp_t = float(rng.uniform(4.0, 7.0))
        self.cortex_t = float(rng.uniform(2.8, 4.0))
        self.atrophy = float(rng.uniform(0.75, 1.45))  # ventricle scale
        self.yaw = float(np.deg2rad(rng.uniform(-8, 8)))
        self.shift = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), 0.0])
        self.z_base = -0.42 * float(self.brain[2])  # skull base plane (head frame)

    # head frame -> patient (LPS) coordinates: yaw about z, then shift
    def to_lps(self, p: Sequence[float]) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        x, y, z = p
        return np.array([c * x - s * y, s * x + c * y, z]) + self.shift

    def ellipsoid(self, c: Canvas, center, radii, angle: float = 0.0, wobble: float = 0.0):
        return c.ellipsoid(self.to_lps(center), radii, angle=angle + self.yaw, wobble=wobble, rng=self.rng)

    def paint_vault(self, c: Canvas) -> None:
        b, hu = self.brain, self.hu
        inner = b + self.csf_gap
        outer = inner + self.skull_t
        shells = [
            (outer + self.scalp_t, "scalp", hu["scalp"]),
            (outer, "skull", hu["cortical_bone"]),
            (inner + self.skull_t * 0.62, "skull", hu["diploe"]),
            (inner + self.skull_t * 0.38, "skull", hu["cortical_bone"]),
            (inner, "subarachnoid_csf", hu["csf"]),
        ]
        for radii, name, value in shells:
            sl, inside = self.ellipsoid(c, (0, 0, 0), radii)
            c.paint(sl, inside, HEAD_IDS[name], value)
        wobble_rng_state = self.rng.integers(1 << 31)
        sl, inside = self.ellipsoid(c, (0, 0, 0), b, wobble=0.03)
        c.paint(sl, inside, HEAD_IDS["brain"], hu["grey_matter"])
        # white matter: the brain minus a cortical ribbon, with a wavy (gyral) boundary
        white = b - self.cortex_t
        sl, inside = self.ellipsoid(c, (0, 0, 0), white, wobble=0.06)
        c.paint(sl, inside, HEAD_IDS["white_matter"], hu["white_matter"], where=(HEAD_IDS["brain"],))
        self._gyri(c, int(wobble_rng_state))

    def _gyri(self, c: Canvas, seed: int) -> None:
        """Sulci: thin CSF clefts running in from the cortical surface (more with atrophy)."""
        rng = np.random.default_rng(seed)
        n = int(rng.integers(14, 26) * self.atrophy)
        for _ in range(n):
            theta, phi = rng.uniform(0, 2 * np.pi), rng.uniform(-0.2, 1.2)
            direction = np.array([np.cos(theta) * np.cos(phi), np.sin(theta) * np.cos(phi), np.sin(phi)])
            point = direction * self.brain * 0.97
            radii = (rng.uniform(1.0, 1.8) * self.atrophy, rng.uniform(6, 14), rng.uniform(6, 14))
            angle = float(np.arctan2(direction[1], direction[0]))
            sl, inside = self.ellipsoid(c, point, radii, angle=angle)
            c.paint(sl, inside, HEAD_IDS["subarachnoid_csf"], self.hu["csf"], where=(HEAD_IDS["brain"],))

    def paint_deep(self, c: Canvas) -> None:
        rng, hu, s = self.rng, self.hu, self.atrophy
        brain_ids = (HEAD_IDS["brain"], HEAD_IDS["white_matter"])
        for side in (-1, 1):
            # basal ganglia and thalami (deep grey)
            sl, inside = self.ellipsoid(c, (side * 19, -4, 4), (7, 14, 9), angle=side * 0.25)
            c.paint(sl, inside, HEAD_IDS["brain"], hu["deep_grey"], where=brain_ids)
            sl, inside = self.ellipsoid(c, (side * 10, 12, 4), (7, 10, 8))
            c.paint(sl, inside, HEAD_IDS["brain"], hu["deep_grey"], where=brain_ids)
            # lateral ventricles: body, frontal horn, occipital horn
            x_v = side * rng.uniform(7, 10) * min(s, 1.2)
            z_v = rng.uniform(14, 22)
            for center, radii in (
                ((x_v, 0, z_v), (4.5 * s, 24, 6 * s)),
                ((x_v * 1.1, -22, z_v - 4), (5 * s, 9, 7 * s)),
                ((x_v * 1.6, 26, z_v - 6), (4 * s, 10, 5 * s)),
            ):
                sl, inside = self.ellipsoid(c, center, radii, angle=side * 0.12)
                c.paint(sl, inside, HEAD_IDS["ventricle"], hu["csf"], where=brain_ids)
            # choroid plexus calcification in the atrium (common, normal)
            if rng.random() < 0.6:
                r = rng.uniform(1.5, 3.5)
                sl, inside = self.ellipsoid(c, (x_v * 1.4, 20, z_v - 3), (r, r * 1.3, r))
                c.paint(sl, inside, HEAD_IDS["calcification"], rng.uniform(150, 400))
        # third ventricle (thin, midline) and pineal calcification
        sl, inside = self.ellipsoid(c, (0, 6, 2), (1.5 * s, 11, 8))
        c.paint(sl, inside, HEAD_IDS["ventricle"], hu["csf"], where=brain_ids)
        if rng.random() < 0.5:
            r = rng.uniform(1.5, 3.0)
            sl, inside = self.ellipsoid(c, (0, 20, 4), (r, r, r))
            c.paint(sl, inside, HEAD_IDS["calcification"], rng.uniform(150, 400))

    def paint_midline(self, c: Canvas) -> None:
        """Falx (a thin hyperdense sheet between the hemispheres above the ventricles) and the sagittal sinus."""
        b = self.brain
        n = max(2, int(2 * b[1] / (c.spacing[2] * 0.5)))
        for y in np.linspace(-0.85 * b[1], 0.9 * b[1], n):
            z_lo = 28.0 if abs(y) < 0.5 * b[1] else 5.0
            z_hi = b[2] * np.sqrt(max(0.0, 1 - (y / b[1]) ** 2)) + 1
            if z_hi <= z_lo:
                continue
            sl, inside = self.ellipsoid(c, (0, y, (z_lo + z_hi) / 2), (0.9, 2 * b[1] / n, (z_hi - z_lo) / 2))
            c.paint(sl, inside, HEAD_IDS["falx"], self.hu["falx"], where=(HEAD_IDS["brain"], HEAD_IDS["white_matter"]))
        # superior sagittal sinus: a tube along the inner table in the midline, seen as a dense triangle
        for t in np.linspace(0.15, 0.95, 24):
            ang = np.pi * t
            point = (0.0, -np.cos(ang) * (b[1] + self.csf_gap * 0.3), np.sin(ang) * (b[2] + self.csf_gap * 0.3))
            sl, inside = self.ellipsoid(c, point, (3.0, 5.0, 3.5))
            c.paint(
                sl,
                inside,
                HEAD_IDS["venous_sinus"],
                self.hu["venous_sinus"],
                where=(HEAD_IDS["subarachnoid_csf"], HEAD_IDS["brain"], HEAD_IDS["white_matter"]),
            )

    def paint_skull_base(self, c: Canvas) -> None:
        """Below ``z_base`` the vault is bone with air cells: petrous ridges, sphenoid sinus, mastoids."""
        rng, hu = self.rng, self.hu
        b = self.brain
        outer = b + self.csf_gap + self.skull_t
        sl, inside = self.ellipsoid(c, (0, 0, 0), outer)
        if sl is not None:
            z = c.axes[2][sl[2]][None, None, :]
            # the base rises towards the sella in the middle; temporal fossae dip lower at the sides
            x, y, _ = c.grid(sl, self.shift)
            dip = 8.0 * np.exp(-((np.abs(x) - 35.0) ** 2) / 300.0) * (y < 10)
            posterior_fossa = 16.0 / (1.0 + np.exp(-(y - 22.0) / 4.0))  # the cerebellum sits lower, behind
            floor = self.z_base - dip - posterior_fossa
            c.paint(sl, inside & (z < floor), HEAD_IDS["skull"], hu["cortical_bone"])
            c.paint(sl, inside & (z < floor - 4) & (z > floor - 10), HEAD_IDS["skull"], hu["diploe"])
        for side in (-1, 1):
            sl, inside = self.ellipsoid(c, (side * 30, 16, self.z_base + 4), (26, 7, 7), angle=side * 0.75)
            c.paint(sl, inside, HEAD_IDS["skull"], hu["petrous_bone"])
            for _ in range(int(rng.integers(3, 7))):
                p = (side * rng.uniform(38, 52), rng.uniform(20, 34), self.z_base + rng.uniform(-12, 2))
                r = rng.uniform(2, 5)
                sl, inside = self.ellipsoid(c, p, (r, r, r))
                c.paint(sl, inside, HEAD_IDS["sinus_air"], hu["sinus_air"], where=(HEAD_IDS["skull"],))
        sl, inside = self.ellipsoid(c, (0, -18, self.z_base - 8), (13, 10, 9))
        c.paint(sl, inside, HEAD_IDS["sinus_air"], hu["sinus_air"], where=(HEAD_IDS["skull"],))

    def draw_metastases(self, n: int) -> list[dict]:
        rng, b = self.rng, self.brain
        found: list[dict] = []
        tries = 0
        while len(found) < n and tries < 500:
            tries += 1
            theta, phi = rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(-0.2, 0.95))
            rho = rng.uniform(0.45, 0.85)  # mostly at the grey/white junction
            direction = np.array([np.cos(theta) * np.cos(phi), np.sin(theta) * np.cos(phi), np.sin(phi)])
            center = direction * b * rho
            diameter = float(np.exp(rng.uniform(np.log(5.0), np.log(30.0))))
            if center[2] - diameter / 2 < self.z_base + 6:
                continue
            # stay clear of the ventricles and of the other metastases
            if abs(center[0]) < 22 and abs(center[1]) < 32 and 0 < center[2] < 32:
                continue
            if any(np.linalg.norm(center - m["_center"]) < (diameter + m["diameter_mm"]) / 2 + 4 for m in found):
                continue
            kind = "ring" if diameter >= 10 and rng.random() < 0.5 else "hyperdense"
            found.append(
                {
                    "_center": center,
                    "kind": kind,
                    "diameter_mm": round(diameter, 2),
                    "hu": round(float(rng.uniform(62, 90) if kind == "ring" else rng.uniform(52, 75)), 1),
                    "core_hu": round(float(rng.uniform(8, 20)), 1),
                    "oedema": bool(diameter >= 8 and rng.random() < 0.7),
                    "oedema_scale": float(rng.uniform(1.5, 2.4)),
                    "oedema_drop": float(rng.uniform(7, 12)),
                }
            )
        return found

    def paint_metastasis(self, c: Canvas, m: dict) -> None:
        center, r = m["_center"], m["diameter_mm"] / 2
        white_hu = self.hu["white_matter"]
        if m["oedema"]:
            ro = r * m["oedema_scale"]
            sl, inside = self.ellipsoid(c, center, (ro, ro * 1.15, ro), angle=self.rng.uniform(0, np.pi), wobble=0.25)
            c.paint(sl, inside, HEAD_IDS["oedema"], white_hu - m["oedema_drop"], where=(HEAD_IDS["white_matter"],))
        sl, inside = self.ellipsoid(c, center, (r, r * 1.1, r * 0.95), wobble=0.12)
        c.paint(sl, inside, HEAD_IDS["metastasis"], m["hu"])
        if m["kind"] == "ring":
            rim = max(1.5, 0.18 * r * 2)
            rc = max(r - rim, 1.0)
            sl, inside = self.ellipsoid(c, center, (rc, rc * 1.1, rc * 0.95), wobble=0.12)
            c.paint(sl, inside, HEAD_IDS["metastasis"], m["core_hu"], where=(HEAD_IDS["metastasis"],))


def generate_head_ct(
    seed: int,
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    n_metastases: int | None = None,
    noise_sd: float | None = None,
) -> SyntheticHeadCT:
    """Draw one synthetic non-contrast head CT.

    Args:
        seed: random seed; the same seed gives the same scan.
        shape: voxels along x, y, z. ``None`` (or a ``None`` entry) gives 256 x 256 and enough 5 mm slices to
            cover the head from below the skull base to the vertex.
        spacing: voxel size in mm (default 0.9 x 0.9 x 5.0, a routine head CT reconstruction).
        n_metastases: number of metastases, 0 to 3 (default: negative or positive with equal probability, then
            1 to 3 at random for a positive).
        noise_sd: image noise SD in HU (default drawn from 5-9 HU; 6.8 HU was measured on the real head CT).

    Returns:
        the scan, its structure labels and its metastases.

    Raises:
        ValueError: ``n_metastases`` outside 0..3, or a shape/spacing that is not 3 positive numbers.
    """
    rng = np.random.default_rng(seed)
    if n_metastases is None:
        n_metastases = int(rng.integers(1, 4)) if rng.random() < 0.5 else 0
    if not 0 <= int(n_metastases) <= 3:
        raise ValueError(f"n_metastases must be 0 to 3, got {n_metastases}")
    spacing = tuple(float(s) for s in (spacing or (0.9, 0.9, 5.0)))
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers in mm, got {spacing}")
    head = _Head(rng)
    z_lo = head.z_base - 22.0
    z_hi = head.brain[2] + head.csf_gap + head.skull_t + head.scalp_t + 6.0
    shape = list(shape) if shape is not None else [None, None, None]
    if len(shape) != 3:
        raise ValueError(f"shape must have 3 entries, got {shape}")
    shape[0] = int(shape[0] or 256)
    shape[1] = int(shape[1] or 256)
    shape[2] = int(shape[2] or int(np.ceil((z_hi - z_lo) / spacing[2])) + 1)
    if min(shape) < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    z_span = (shape[2] - 1) * spacing[2]
    origin = (
        -(shape[0] - 1) * spacing[0] / 2,
        -(shape[1] - 1) * spacing[1] / 2 + 8.0,  # the head sits a little anterior in the field of view
        (z_lo + z_hi) / 2 - z_span / 2,
    )
    canvas = Canvas(shape, spacing, origin, background_hu=head.hu["air"])
    head.paint_vault(canvas)
    head.paint_deep(canvas)
    head.paint_midline(canvas)
    head.paint_skull_base(canvas)
    metastases = head.draw_metastases(int(n_metastases))
    for m in metastases:
        head.paint_metastasis(canvas, m)
    if noise_sd is None:
        noise_sd = float(rng.uniform(5.0, 9.0))
    image = acquire(canvas.hu, spacing, rng, noise_sd=noise_sd, psf_fwhm_mm=float(rng.uniform(0.8, 1.2)))
    records = []
    met_id = HEAD_IDS["metastasis"]
    for m in metastases:
        lps = head.to_lps(m.pop("_center"))
        ijk = np.rint((lps - canvas.origin) / canvas.spacing).astype(int)
        r_vox = np.ceil(m["diameter_mm"] / 2 / canvas.spacing * 1.3).astype(int) + 1
        box = tuple(slice(max(0, i - r), min(n, i + r + 1)) for i, r, n in zip(ijk, r_vox, shape, strict=True))
        own = canvas.labels[box] == met_id
        slices = sorted({int(k) + int(box[2].start) for k in np.nonzero(own.any(axis=(0, 1)))[0]})
        records.append(
            {
                "kind": m["kind"],
                "center_mm": [round(float(v), 2) for v in lps],
                "diameter_mm": m["diameter_mm"],
                "hu": m["hu"],
                "oedema": m["oedema"],
                "voxels": int(own.sum()),
                "slices": slices,
            }
        )
    # a metastasis that ends up too small to draw a voxel on this grid does not count
    records = [r for r in records if r["voxels"] > 0]
    return SyntheticHeadCT(
        image=image, labels=canvas.labels, affine=canvas.affine(), seed=int(seed), metastases=records
    )


def _draw(args: tuple) -> SyntheticHeadCT:
    seed, shape, spacing, n_metastases = args
    return generate_head_ct(seed, shape=shape, spacing=spacing, n_metastases=n_metastases)


def _balanced_counts(rng: np.random.Generator, n: int, positive_fraction: float) -> list[int]:
    """Metastasis counts for ``n`` patients: exactly ``round(n * positive_fraction)`` positives with 1-3 each."""
    n_pos = int(round(n * positive_fraction))
    counts = [int(rng.integers(1, 4)) for _ in range(n_pos)] + [0] * (n - n_pos)
    return [counts[i] for i in rng.permutation(n)]


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path


def generate_head_cohort(
    out_dir: str | os.PathLike,
    n_patients: int = 60,
    n_test: int = 0,
    seed: int = 0,
    positive_fraction: float = 0.5,
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Generate a brain-metastasis cohort: one DICOM CT series per patient and the patient labels.

    Layout::

        out_dir/
          labels.csv          patient_id,label   (training + validation patients; 1 = metastases)
          labels_test.csv     patient_id,label   (held-out patients, when n_test > 0)
          lesions.csv         patient_id,lesion,kind,diameter_mm,hu,oedema,center_x/y/z_mm,first/last_slice
          cohort.json         seeds, geometry and metastases of every patient
          HEAD0001/IM0001.dcm ...   one CT series per patient

    Args:
        out_dir: destination folder (created).
        n_patients: training + validation patients (``labels.csv``).
        n_test: held-out patients (``labels_test.csv``).
        seed: cohort seed (patient ``i`` is drawn from :func:`patient_seed`).
        positive_fraction: share of patients with metastases, in each of the two sets (exact after rounding).
        shape: voxels per axis (see :func:`generate_head_ct`).
        spacing: voxel size in mm (see :func:`generate_head_ct`).
        workers: processes drawing scans in parallel.
        progress: show a progress bar.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: no patients, or ``positive_fraction`` outside [0, 1].
    """
    from tqdm import tqdm

    if n_patients < 0 or n_test < 0 or n_patients + n_test == 0:
        raise ValueError(f"need at least one patient, got n_patients={n_patients}, n_test={n_test}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 7919])
    counts = _balanced_counts(rng, n_patients, positive_fraction) + _balanced_counts(rng, n_test, positive_fraction)
    total = n_patients + n_test
    jobs = [(patient_seed(seed, i), shape, spacing, counts[i]) for i in range(total)]
    ids = [f"HEAD{i + 1:04d}" for i in range(total)]
    labels: dict[str, list] = {"training": [], "test": []}
    lesions, manifest = [], []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    drawn = pool.map(_draw, jobs) if pool else map(_draw, jobs)
    try:
        for i, ct in enumerate(tqdm(drawn, total=total, desc="generate head CT", disable=not progress)):
            pid, split = ids[i], "training" if i < n_patients else "test"
            write_dicom_series(out / pid, ct.image, ct.affine, patient_id=pid, series_description="Synthetic head CT")
            labels[split].append((pid, ct.label))
            for j, m in enumerate(ct.metastases):
                lesions.append(
                    (pid, j + 1, m["kind"], m["diameter_mm"], m["hu"], int(m["oedema"]), *m["center_mm"])
                    + (m["slices"][0], m["slices"][-1])
                )
            manifest.append(
                {
                    "patient_id": pid,
                    "seed": jobs[i][0],
                    "split": split,
                    "label": ct.label,
                    "shape": list(ct.image.shape),
                    "spacing": [round(s, 4) for s in ct.spacing],
                    "metastases": ct.metastases,
                }
            )
    finally:
        if pool:
            pool.shutdown()
    header = ("patient_id", "label")
    if n_patients:
        _write_csv(out / "labels.csv", header, labels["training"])
    if n_test:
        _write_csv(out / "labels_test.csv", header, labels["test"])
    _write_csv(
        out / "lesions.csv",
        (
            "patient_id",
            "lesion",
            "kind",
            "diameter_mm",
            "hu",
            "oedema",
            "center_x_mm",
            "center_y_mm",
            "center_z_mm",
            "first_slice",
            "last_slice",
        ),
        lesions,
    )
    write_json(
        out / "cohort.json",
        {"generator": "monai_apps.data.synthetic_head", "seed": seed, "patients": manifest},
    )
    return out


def read_labels_csv(path: str | os.PathLike) -> dict[str, int]:
    """Read a ``patient_id,label`` CSV (as written by :func:`generate_head_cohort`) into a dict."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: int(r[1]) for r in rows[1:] if r}
