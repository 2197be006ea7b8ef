"""Synthetic chest CT volumes with lung tumours and TotalSegmentator-named labels (Decathlon Task06_Lung-like).

Each subject is drawn from a seed: body size, the thorax of :class:`monai_apps.data.thorax.Thorax` (chest wall with
ribs, costal cartilages, sternum, clavicles and scapulae; thoracic spine; five lung lobes with fissures and
branching arteries, veins and bronchi; trachea and main bronchi; oesophagus; thyroid; heart with its chambers; aorta,
arch branches, pulmonary trunk and arteries, pulmonary veins, venae cavae; diaphragm with liver, stomach and spleen),
0 to 3 lung tumours, the contrast phase, scan spacing and noise. The anatomy is painted in patient millimetres and
the scanner model (:func:`monai_apps.data.scanner.acquire`) adds partial-volume blur and correlated noise.

Tumours lie inside the lungs (at least 85 % of a tumour's voxels, the rest abutting pleura, fissure or mediastinum):

* ``solid``: soft-tissue density, lobulated, some with spicules (thin strands that are not labelled);
* ``part_solid``: a ground-glass halo (about -600 HU: lung whose vessels stay visible through it) around a solid
  core of 30-60 % of its diameter.

Their equivalent diameters are drawn log-uniformly between 5 mm and 60 mm by default, and no semi-axis is shorter
than 2.5 mm, so the smallest nodules are about 5 mm across.

Label ids are TotalSegmentator ``total`` ids (``lung_upper_lobe_left`` 10 ... ``lung_lower_lobe_right`` 14,
``trachea`` 16, ``heart`` 51, ``aorta`` 52, ``rib_left_1`` 92 ... ``vertebrae_T1`` 43 ...) and, for what that task
does not name, :data:`EXTRA_IDS`: ``lung_tumor`` 205, ``bronchus`` 206 (main bronchi), ``pulmonary_artery`` 207 and
the tissue ids 200-204 of the abdominal generator. Vessels and airways inside the lungs keep their lobe's label, as
in TotalSegmentator. :meth:`SyntheticChestCT.msd_label` gives the Decathlon Task06_Lung labels (0 background,
1 tumour).

Hounsfield units (:data:`CHEST_HU`) were measured on the two real chest CTs of ``pyradiomics`` (``lung1_image.nrrd``
512x512x48, 0.57 mm, and ``lung2_image.nrrd`` 512x512x61, 0.63 mm, both 5 mm slices and without contrast; see
``../shared/data/real/SOURCES.md``), by thresholding inside the body mask and eroding 2 voxels in-plane, medians:

* lung parenchyma (filled lung mask, tumour excluded) -868 and -833 HU (10th-90th percentile -923..-737 and
  -885..-671 with the vessels); trachea air -1012 and -1000; air outside the body -999 and -994;
* fat (-200..-30 HU) -110 and -104; soft tissue (-30..150 HU) 43 and 46; blood in the ascending aorta of lung1
  about 44 and in the heart of lung2 45 (non-contrast);
* vertebral body cancellous bone (filled, eroded) 186 and 173; bone voxels above 200 HU: median 339 and 338,
  95th percentile 786 and 804 (cortex);
* tumours: lung2's solid mass median 41 (43 eroded); lung1's small part-solid nodule median -31, mean -64.

Contrast-enhanced values (the ``contrast`` phase: a venous-phase chest CT about 60-70 s after injection) follow
textbook ranges (Radiopaedia, "Hounsfield unit"; enhancing blood pool 150-200 HU, enhancing myocardium ~100 HU,
solid lung cancers enhance 20-60 HU); the arterial CTA of TotalSegmentator's ``aorta_report/example_ct.nii.gz``
measures 403 HU in the aorta and 473 HU in the heart, an upper bound we stay well below. Ground-glass opacity
-750..-300 HU and costal cartilage 80-150 HU are textbook ranges as well.

Example::

    from monai_apps.data.synthetic_chest import generate_chest_ct

    ct = generate_chest_ct(seed=7)
    ct.image.shape, ct.image.dtype  # (512, 512, n), int16, covering 250-320 mm
    tumour = ct.msd_label()  # 0 background, 1 tumour
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .canvas import Canvas
from .hounsfield import Attenuation, hu_table
from .scanner import acquire
from .thorax import EXTRA_IDS, INTERNAL_IDS, LOBE_IDS, LOBES, TS_IDS, Thorax, capsule

__all__ = [
    "CHEST_HU",
    "CHEST_PHASES",
    "EXTRA_IDS",
    "STRUCTURE_IDS",
    "TS_IDS",
    "TUMOR",
    "SyntheticChestCT",
    "generate_chest_ct",
]

#: Output label ids: TotalSegmentator ``total`` ids plus :data:`EXTRA_IDS`.
STRUCTURE_IDS: dict[str, int] = {**TS_IDS, **EXTRA_IDS}
TUMOR = EXTRA_IDS["lung_tumor"]
CHEST_PHASES = ("non_contrast", "contrast")

_CHEST_COMMON = {
    "air": Attenuation(-1000.0, 0.0),
    "lung": Attenuation(-850.0, 20.0),
    "subcutaneous_fat": Attenuation(-107.0, 6.0),
    "torso_fat": Attenuation(-100.0, 6.0),
    "cortical_bone": Attenuation(800.0, 80.0),
    "cancellous_bone": Attenuation(180.0, 30.0),
    "disc": Attenuation(85.0, 8.0),
    "spinal_cord": Attenuation(20.0, 6.0),
    "cartilage": Attenuation(115.0, 25.0),
    "table": Attenuation(250.0, 30.0),
    "fissure": Attenuation(-650.0, 40.0),
    "ground_glass": Attenuation(-600.0, 60.0),
    "bowel_fluid": Attenuation(15.0, 6.0),
    "bowel_gas": Attenuation(-950.0, 20.0),
}
#: Per-phase attenuation of every chest tissue (mean HU and between-subject SD).
CHEST_HU: dict[str, dict[str, Attenuation]] = {
    "non_contrast": {
        **_CHEST_COMMON,
        "skeletal_muscle": Attenuation(45.0, 6.0),
        "soft_tissue": Attenuation(40.0, 6.0),
        "blood": Attenuation(43.0, 5.0),
        "myocardium": Attenuation(47.0, 5.0),
        "thyroid": Attenuation(100.0, 15.0),
        "lung_tumor": Attenuation(38.0, 8.0),
        "liver": hu_table("non_contrast")["liver"],
        "spleen": hu_table("non_contrast")["spleen"],
    },
    "contrast": {
        **_CHEST_COMMON,
        "skeletal_muscle": Attenuation(55.0, 6.0),
        "soft_tissue": Attenuation(60.0, 8.0),
        "blood": Attenuation(170.0, 25.0),
        "myocardium": Attenuation(105.0, 12.0),
        "thyroid": Attenuation(140.0, 20.0),
        "lung_tumor": Attenuation(75.0, 12.0),
        "liver": hu_table("portal_venous")["liver"],
        "spleen": hu_table("portal_venous")["spleen"],
    },
}

#: internal painting ids -> output ids
_OUTPUT = {
    "heart_myocardium": "heart",
    "heart_atrium_left": "heart",
    "heart_ventricle_left": "heart",
    "heart_atrium_right": "heart",
    "heart_ventricle_right": "heart",
    "pulmonary_vein_ostium": "pulmonary_vein",
    "abdominal_fat": "torso_fat",
    "lung_left": "lung_lower_lobe_left",
    "lung_right": "lung_lower_lobe_right",
    "diaphragm": "skeletal_muscle",
    "epicardial_fat": "torso_fat",
}


def _output_lut() -> np.ndarray:
    lut = np.arange(256, dtype=np.uint8)
    for internal, out in _OUTPUT.items():
        lut[INTERNAL_IDS[internal]] = STRUCTURE_IDS[out]
    return lut


@dataclass
class SyntheticChestCT:
    """One generated chest CT.

    Attributes:
        image: int16 HU volume ``(X, Y, Z)``.
        labels: uint8 structure ids (:data:`STRUCTURE_IDS`), same shape; tumour voxels carry ``lung_tumor``.
        affine: 4x4 NIfTI (RAS) affine.
        phase: ``non_contrast`` or ``contrast``.
        seed: the seed it was drawn from.
        tumours: one dict per tumour (centre in LPS mm, equivalent diameter in mm, kind, HU, lobe, voxels).
        tumour_lobes: flat voxel indices of the tumours and the lobe id each voxel lies in.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    phase: str
    seed: int
    tumours: list[dict] = field(default_factory=list)
    tumour_lobes: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.uint8))
    )

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of a structure by name.

        Lobes include the tumour voxels inside them (as a lobe segmentation would); ``lung_left``,
        ``lung_right`` and ``lungs`` are the unions of their lobes.
        """
        groups = {"lung_left": LOBES["left"], "lung_right": LOBES["right"], "lungs": LOBES["left"] + LOBES["right"]}
        if name in groups:
            out = np.zeros(self.labels.shape, dtype=bool)
            for lobe in groups[name]:
                out |= self.mask(lobe)
            return out
        if name not in STRUCTURE_IDS:
            raise KeyError(f"unknown structure {name!r}")
        out = self.labels == STRUCTURE_IDS[name]
        if STRUCTURE_IDS[name] in LOBE_IDS:
            idx, lobe = self.tumour_lobes
            out.reshape(-1)[idx[lobe == STRUCTURE_IDS[name]]] = True
        return out

    def msd_label(self) -> np.ndarray:
        """Medical Segmentation Decathlon Task06_Lung labels: 0 background, 1 tumour."""
        return (self.labels == TUMOR).astype(np.uint8)

    def present_structures(self) -> list[str]:
        """TotalSegmentator names of the ``total`` structures present in this volume."""
        ids = set(np.unique(self.labels).tolist()) | set(np.unique(self.tumour_lobes[1]).tolist())
        return sorted(n for n, i in TS_IDS.items() if i in ids)


def _draw_values(rng: np.random.Generator, phase: str) -> dict[str, float]:
    return {name: float(rng.normal(a.mean, a.subject_sd)) for name, a in CHEST_HU[phase].items()}


def _choose_grid(
    rng: np.random.Generator,
    thorax: Thorax,
    shape: Sequence[int | None] | None,
    spacing: Sequence[float] | None,
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    nx, ny, nz = (list(shape) + [None] * 3)[:3] if shape is not None else (512, 512, None)
    nx, ny = 512 if nx is None else int(nx), 512 if ny is None else int(ny)
    coverage = rng.uniform(250, 320)
    if spacing is None:
        sxy = float(np.clip((2 * thorax.a + 60) / max(nx, ny), 0.6, 0.9))
        sz = float(rng.uniform(1.0, 5.0)) if nz is None else float(np.clip(coverage / nz, 1.0, 5.0))
        spacing = (sxy, sxy, round(sz, 2))
    if nz is None:
        nz = int(round(coverage / spacing[2]))
    return (nx, ny, int(nz)), tuple(float(s) for s in spacing)


def _paint_tumours(
    thorax: Thorax,
    c: Canvas,
    rng: np.random.Generator,
    n: int,
    values: dict[str, float],
    diameter_mm: tuple[float, float],
) -> tuple[list[dict], tuple[np.ndarray, np.ndarray]]:
    lobes = np.asarray(LOBE_IDS, dtype=np.uint8)
    tumours: list[dict] = []
    idx_all, lobe_all = [], []
    for _ in range(n):
        d = float(np.exp(rng.uniform(np.log(diameter_mm[0]), np.log(diameter_mm[1]))))
        kind = "part_solid" if rng.random() < 0.35 else "solid"
        wobble = 0.12 if d > 15 else 0.06
        radii = d / 2 * rng.uniform(0.85, 1.15, size=3)
        radii *= (d / 2) / np.prod(radii) ** (1 / 3)  # keep the equivalent diameter
        radii = np.maximum(radii, 2.5 / (1 - wobble))
        angle = float(rng.uniform(0, np.pi))
        side = "right" if rng.random() < 0.55 else "left"
        placed = None
        for center in thorax.sample_lung_points(c, side, 30):
            sl, m = c.ellipsoid(center, radii, angle=angle, wobble=wobble, rng=rng)
            if sl is None or not m.any():
                continue
            inside = np.isin(c.labels[sl][m], lobes)
            if inside.mean() >= 0.85:
                placed = (center, sl, m)
                break
        if placed is None:
            continue
        center, sl, m = placed
        m = m & np.isin(c.labels[sl], lobes)
        local = np.flatnonzero(m)
        box_idx = np.unravel_index(local, m.shape)
        global_idx = np.ravel_multi_index(tuple(b + s.start for b, s in zip(box_idx, sl, strict=True)), c.shape)
        lobe_ids = c.labels[sl][m]
        hu_solid = values["lung_tumor"] + float(rng.normal(0, 6))
        core = None
        if kind == "part_solid":
            ggo = values["ground_glass"] + float(rng.normal(0, 40))
            c.paint(sl, m, TUMOR, np.maximum(c.hu[sl], np.float32(ggo)))
            core = float(rng.uniform(0.3, 0.6))
            sl_c, m_c = c.ellipsoid(center, np.maximum(radii * core, 1.5), angle=angle, wobble=0.08, rng=rng)
            c.paint(sl_c, m_c, None, hu_solid, where=(TUMOR,))
        else:
            c.paint(sl, m, TUMOR, hu_solid)
            if d > 10 and rng.random() < 0.5:  # spicules: thin strands into the lung, not labelled
                for _ in range(int(rng.integers(4, 9))):
                    direction = rng.normal(size=3)
                    direction /= np.linalg.norm(direction)
                    tip = center + direction * radii.mean() * rng.uniform(1.4, 2.0)
                    s_sl, s_m = capsule(c, center, tip, rng.uniform(0.9, 1.4), 0.5)
                    c.paint(s_sl, s_m, None, hu_solid - 20, where=LOBE_IDS)
        counts = np.bincount(lobe_ids, minlength=256)
        lobe = next(n for n, i in STRUCTURE_IDS.items() if i == int(np.argmax(counts)))
        tumours.append(
            {
                "center_lps_mm": [round(float(v), 1) for v in center],
                "diameter_mm": round(d, 1),
                "kind": kind,
                "hu": round(hu_solid, 1),
                "core_fraction": None if core is None else round(core, 2),
                "lobe": lobe,
                "voxels": int(m.sum()),
            }
        )
        idx_all.append(global_idx)
        lobe_all.append(lobe_ids)
    if not idx_all:
        return tumours, (np.zeros(0, np.int64), np.zeros(0, np.uint8))
    return tumours, (np.concatenate(idx_all).astype(np.int64), np.concatenate(lobe_all).astype(np.uint8))


def generate_chest_ct(
    seed: int,
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    n_tumours: int | None = None,
    noise_sd: float | None = None,
    phase: str | None = None,
    tumour_diameter_mm: Sequence[float] = (5.0, 60.0),
) -> SyntheticChestCT:
    """Generate one synthetic chest CT with its structure labels and 0 to 3 lung tumours.

    Args:
        seed: the subject's seed; the same seed and arguments give the same volume, bit for bit.
        shape: voxels along x, y, z. Default 512 x 512 and as many slices as cover 250-320 mm (lung apices to the
            upper abdomen); ``None`` entries are chosen the same way.
        spacing: voxel size in mm. Default: in-plane 0.6-0.9 mm fitted to the body, slices 1-5 mm.
        n_tumours: number of lung tumours; default 0 to 3 at random.
        noise_sd: noise standard deviation in HU; default 10-25 HU at random.
        phase: ``non_contrast`` or ``contrast`` (venous phase); default drawn at random (half each).
        tumour_diameter_mm: range of tumour equivalent diameters, drawn log-uniformly (at least 5 mm).

    Returns:
        a :class:`SyntheticChestCT` with an int16 image, uint8 labels and a NIfTI affine.

    Raises:
        ValueError: for an unknown phase, a negative tumour count, a bad diameter range or a grid smaller than
            8 x 8 x 1 voxels.

    Example::

        ct = generate_chest_ct(seed=1, shape=(256, 256, None), spacing=(1.4, 1.4, 5.0), n_tumours=2)
        ct.tumours[0]["diameter_mm"], ct.msd_label().sum()
    """
    if phase is not None and phase not in CHEST_PHASES:
        raise ValueError(f"unknown chest CT phase {phase!r}; expected one of {', '.join(CHEST_PHASES)}")
    if n_tumours is not None and n_tumours < 0:
        raise ValueError(f"n_tumours must be >= 0, got {n_tumours}")
    d0, d1 = (float(v) for v in tumour_diameter_mm)
    if not 5.0 <= d0 <= d1:
        raise ValueError(f"tumour_diameter_mm must be (min, max) with 5 <= min <= max, got {tuple(tumour_diameter_mm)}")
    rng = np.random.default_rng(seed)
    drawn_phase = CHEST_PHASES[int(rng.integers(0, 2))]
    phase = phase or drawn_phase
    values = _draw_values(rng, phase)
    thorax = Thorax(rng, values, lung_gradient=40.0, lung_texture=12.0)
    grid_shape, grid_spacing = _choose_grid(rng, thorax, shape, spacing)
    if min(grid_shape[:2]) < 8 or grid_shape[2] < 1:
        raise ValueError(f"grid {grid_shape} is too small: at least 8 x 8 voxels in-plane and 1 slice")
    z_top = thorax.z_apex + float(rng.uniform(5, 25))
    origin = [-(n - 1) / 2 * s for n, s in zip(grid_shape[:2], grid_spacing[:2], strict=True)]
    origin[1] += 8.0  # leave room for the table behind the patient
    origin.append(z_top - (grid_shape[2] - 1) * grid_spacing[2])
    canvas = Canvas(grid_shape, grid_spacing, origin, background_hu=values["air"])
    thorax.paint(canvas, z_top)
    n = int(rng.integers(0, 4)) if n_tumours is None else int(n_tumours)
    tumours, tumour_lobes = _paint_tumours(thorax, canvas, rng, n, values, (d0, d1))
    sd = float(rng.uniform(10, 25)) if noise_sd is None else float(noise_sd)
    image = acquire(canvas.hu, grid_spacing, rng, noise_sd=sd)
    canvas.hu = None
    labels = _output_lut()[canvas.labels]
    return SyntheticChestCT(
        image=image,
        labels=labels,
        affine=canvas.affine(),
        phase=phase,
        seed=int(seed),
        tumours=tumours,
        tumour_lobes=tumour_lobes,
    )
