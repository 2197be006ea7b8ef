"""Synthetic abdominal CT volumes with liver tumours and TotalSegmentator-named organ labels.

Each subject is drawn from a seed: body size and shape, organ positions, sizes and shapes, 0 to 3 hypodense liver
tumours, bowel loops with gas and fluid, scan spacing, noise level and contrast phase. The anatomy is painted in
patient coordinates (millimetres), so it keeps its real-world size whatever the voxel spacing, and the scanner model
(:func:`monai_apps.data.scanner.acquire`) adds partial-volume blur and correlated noise.

Label ids follow TotalSegmentator's ``total`` task (for example liver 5, spleen 1, kidney_left 3); tissues that task
does not name get ids from 200 up (see :data:`EXTRA_IDS`). HU values and their sources are in
:mod:`monai_apps.data.hounsfield`.

Example::

    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct

    ct = generate_abdominal_ct(seed=7, shape=(512, 512, 200))
    ct.image.shape, ct.image.dtype  # (512, 512, 200), int16
    liver_and_tumour = ct.msd_label()  # 0 background, 1 liver, 2 tumour
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from totalsegmentator.map_to_binary import class_map

from .canvas import Canvas
from .hounsfield import hu_table
from .scanner import acquire

__all__ = [
    "EXTRA_IDS",
    "STRUCTURE_IDS",
    "TS_IDS",
    "SyntheticCT",
    "generate_abdominal_ct",
]

#: TotalSegmentator ``total`` task: name -> label id.
TS_IDS: dict[str, int] = {name: int(i) for i, name in class_map["total"].items()}
#: Tissues the ``total`` task does not label.
EXTRA_IDS: dict[str, int] = {
    "subcutaneous_fat": 200,
    "skeletal_muscle": 201,
    "torso_fat": 202,
    "liver_tumor": 203,
    "intervertebral_disc": 204,
}
STRUCTURE_IDS: dict[str, int] = {**TS_IDS, **EXTRA_IDS}
VERTEBRAE = ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")

SUBCUT, MUSCLE, VISCERAL = EXTRA_IDS["subcutaneous_fat"], EXTRA_IDS["skeletal_muscle"], EXTRA_IDS["torso_fat"]
TUMOR = EXTRA_IDS["liver_tumor"]


@dataclass
class SyntheticCT:
    """One generated subject.

    Attributes:
        image: int16 HU volume ``(X, Y, Z)``.
        labels: uint8 structure ids, same shape (TotalSegmentator ids, plus :data:`EXTRA_IDS`).
        affine: 4x4 NIfTI (RAS) affine.
        phase: contrast phase of the HU table used.
        seed: the seed it was drawn from.
        tumours: one dict per liver tumour (centre in LPS mm, radius in mm, mean HU, kind).
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    phase: str
    seed: int
    tumours: list[dict] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of one structure by its TotalSegmentator name (``liver`` includes its tumours)."""
        if name == "liver":
            return (self.labels == STRUCTURE_IDS["liver"]) | (self.labels == TUMOR)
        if name not in STRUCTURE_IDS:
            raise KeyError(f"unknown structure {name!r}")
        return self.labels == STRUCTURE_IDS[name]

    def msd_label(self) -> np.ndarray:
        """Medical Segmentation Decathlon Task03 labels: 0 background, 1 liver, 2 tumour."""
        out = np.zeros(self.labels.shape, dtype=np.uint8)
        out[self.labels == STRUCTURE_IDS["liver"]] = 1
        out[self.labels == TUMOR] = 2
        return out

    def present_structures(self) -> list[str]:
        """TotalSegmentator names of the ``total`` structures present in this volume."""
        ids = set(np.unique(self.labels).tolist())
        names = [n for n, i in TS_IDS.items() if i in ids]
        if TUMOR in ids and "liver" not in names:
            names.append("liver")
        return sorted(names)


def _sphere_chain(
    canvas: Canvas,
    points: np.ndarray,
    radius: float,
    wall: float,
    label: int,
    wall_hu: float,
    lumen_hu: float,
    gas_hu: float,
    gas_level: float | None,
) -> None:
    """Paint a tube (a chain of overlapping spheres): wall first, then lumen with gas above an air-fluid level.

    ``gas_level`` is an LPS y in mm: lumen voxels anterior to it (smaller y, the patient lies supine) hold gas.
    """
    for p in points:
        sl, inside = canvas.ellipsoid(p, (radius, radius, radius))
        canvas.paint(sl, inside, label, wall_hu, where=(VISCERAL,))
    inner = radius - wall
    for p in points:
        sl, inside = canvas.ellipsoid(p, (inner, inner, inner))
        if sl is None:
            continue
        hu = np.float32(lumen_hu)
        if gas_level is not None:
            y = canvas.axes[1][sl[1]][None, :, None]
            hu = np.where(y < gas_level, np.float32(gas_hu), hu)
        canvas.paint(sl, inside, label, hu, where=(label,))


def _random_walk(
    rng: np.random.Generator, start: np.ndarray, steps: int, step_mm: float, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """A persistent random walk reflected inside the box ``[lo, hi]``."""
    points = [start.astype(np.float64)]
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    for _ in range(steps - 1):
        direction = direction + 0.7 * rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        nxt = points[-1] + step_mm * direction
        out = (nxt < lo) | (nxt > hi)
        direction[out] *= -1
        points.append(np.clip(nxt, lo, hi))
    return np.asarray(points)


def _resample_polyline(points: np.ndarray, step_mm: float) -> np.ndarray:
    """Points every ``step_mm`` along a polyline."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 1e-6, step_mm)
    return np.stack([np.interp(t, s, points[:, d]) for d in range(3)], axis=1)


class _Subject:
    """Random anatomy of one subject, in mm, and the painting of it onto a canvas."""

    def __init__(self, rng: np.random.Generator, phase: str) -> None:
        self.rng = rng
        table = hu_table(phase)
        # one mean per tissue per subject
        self.hu = {name: float(rng.normal(a.mean, a.subject_sd)) for name, a in table.items()}
        self.a = float(rng.uniform(140, 185))  # body half-width (x)
        self.b_ant = float(rng.uniform(100, 135))  # body half-depth, front
        self.b_post = 0.85 * self.b_ant
        self.fat = rng.uniform(10, 35, size=2)  # subcutaneous fat: lateral/anterior, posterior
        self.muscle = float(rng.uniform(8, 14))
        self.sx, self.sy = self.a / 165.0, self.b_ant / 115.0
        self.z_l1 = float(rng.normal(0.0, 12.0))  # z of the L1/L2 disc

    def jitter(self, v: Sequence[float], sd: float) -> np.ndarray:
        return np.asarray(v, dtype=np.float64) + self.rng.normal(0, sd, size=len(v))

    # --- body wall --------------------------------------------------------------------------------------------
    def paint_body(self, c: Canvas) -> None:
        x2 = c.axes[0].astype(np.float32) ** 2
        y = c.axes[1]
        z = c.axes[2]
        wave = 1.0 + 0.04 * np.sin(z / 90.0 + self.rng.uniform(0, 6.28))
        f_lat, f_post = self.fat
        layers = [
            (0.0, 0.0, SUBCUT, self.hu["subcutaneous_fat"]),
            (f_lat, f_post, MUSCLE, self.hu["skeletal_muscle"]),
            (f_lat + self.muscle, f_post + self.muscle, VISCERAL, self.hu["torso_fat"]),
        ]
        for d_lat, d_post, label, hu in layers:
            a = (self.a * wave - d_lat).astype(np.float32)
            b_front, b_back = self.b_ant - d_lat, self.b_post - d_post
            yn2 = np.where(y < 0, y / b_front, y / b_back).astype(np.float32) ** 2
            for k0 in range(0, c.shape[2], 32):
                k1 = min(k0 + 32, c.shape[2])
                inside = x2[:, None, None] / (a[None, None, k0:k1] ** 2) + yn2[None, :, None] < 1.0
                c.labels[:, :, k0:k1][inside] = label
                c.hu[:, :, k0:k1][inside] = hu
        self.cavity = (
            self.a - f_lat - self.muscle,
            self.b_ant - f_lat - self.muscle,
            self.b_post - f_post - self.muscle,
        )
        # patient table under the back
        y_table = self.b_post + 6.0
        sl = c.box((-0.95 * self.a - 40, y_table, -1e4), (0.95 * self.a + 40, y_table + 12, 1e4))
        if sl is not None:
            c.paint(sl, np.ones(tuple(s.stop - s.start for s in sl), bool), 0, self.hu["table"], where=(0,))

    # --- spine, back muscles, ribs ----------------------------------------------------------------------------
    def paint_spine(self, c: Canvas) -> None:
        y_back = self.b_post - self.fat[1]
        self.y_canal = y_back - 60.0 * self.sy
        self.y_vb = self.y_canal - 28.0 * self.sy
        soft = (SUBCUT, MUSCLE, VISCERAL)
        for side, name in ((1, "autochthon_left"), (-1, "autochthon_right")):
            sl, m = c.cylinder((side * 32 * self.sx, y_back - 28 * self.sy), (26 * self.sx, 30 * self.sy), (-1e4, 1e4))
            c.paint(sl, m, STRUCTURE_IDS[name], self.hu["skeletal_muscle"], where=soft)
        height, disc = 29.0, 8.0
        pitch = height + disc
        z_top = self.z_l1 + 4 * pitch + disc / 2 + height  # top of T9's body
        bone = (*soft, STRUCTURE_IDS["autochthon_left"], STRUCTURE_IDS["autochthon_right"])
        for i, level in enumerate(VERTEBRAE):
            label = STRUCTURE_IDS[f"vertebrae_{level}"]
            z1 = z_top - i * pitch
            z0 = z1 - height
            scale = 0.8 + 0.04 * i
            rx, ry = 24 * scale * self.sx, 18 * scale * self.sy
            sl, m = c.cylinder((0, self.y_vb), (rx, ry), (z0, z1))
            c.paint(sl, m, label, self.hu["cortical_bone"], where=bone)
            sl, m = c.cylinder((0, self.y_vb), (rx - 2.0, ry - 2.0), (z0 + 1.5, z1 - 1.5))
            c.paint(sl, m, label, self.hu["cancellous_bone"], where=(label,))
            sl, m = c.cylinder((0, self.y_vb), (rx, ry), (z0 - disc, z0))
            c.paint(sl, m, EXTRA_IDS["intervertebral_disc"], self.hu["disc"], where=bone)
            # neural arch and spinous process
            sl, m = c.cylinder((0, self.y_canal), (15, 13), (z0 + 3, z1 + 2))
            c.paint(sl, m, label, 0.5 * (self.hu["cortical_bone"] + self.hu["cancellous_bone"]), where=bone)
            sl, m = c.cylinder((0, self.y_canal + 22 * self.sy), (4, 14 * self.sy), (z0, z1 - 6))
            c.paint(sl, m, label, self.hu["cortical_bone"], where=bone)
            sl, m = c.cylinder((0, self.y_canal), (40 * scale, 5), (z1 - 12, z1 - 4))  # transverse processes
            c.paint(sl, m, label, self.hu["cancellous_bone"], where=bone)
        sl, m = c.cylinder((0, self.y_canal), (8, 7), (-1e4, 1e4))
        c.paint(sl, m, STRUCTURE_IDS["spinal_cord"], self.hu["spinal_cord"], where=None)
        self.bone_labels = [STRUCTURE_IDS[f"vertebrae_{v}"] for v in VERTEBRAE]

    def paint_psoas(self, c: Canvas) -> None:
        z_start = self.z_l1 + 25
        zs = c.axes[2]
        radius = np.clip(6 + 22 * (z_start - zs) / 150.0, 0, 28).astype(np.float32) * float(self.sx)
        for side, name in ((1, "iliopsoas_left"), (-1, "iliopsoas_right")):
            xs = side * (30 + 0.35 * np.clip(z_start - zs, 0, None)) * self.sx
            centers = np.stack([xs, np.full_like(xs, self.y_vb + 4)], axis=1)
            sl, m = c.tube_z(centers, radius, (-1e4, z_start))
            c.paint(sl, m, STRUCTURE_IDS[name], self.hu["skeletal_muscle"], where=(VISCERAL,))

    def paint_ribs(self, c: Canvas) -> None:
        a_c, b_front, b_back = self.cavity
        targets = (
            MUSCLE,
            VISCERAL,
            SUBCUT,
            STRUCTURE_IDS["lung_lower_lobe_left"],
            STRUCTURE_IDS["lung_lower_lobe_right"],
        )
        # (rib number, posterior z relative to L1/L2, how far round to the front it reaches: 0 back .. 1 front)
        for number, dz, reach in ((8, 200, 0.95), (9, 170, 0.9), (10, 140, 0.85), (11, 110, 0.6), (12, 80, 0.4)):
            z_post = self.z_l1 + dz + self.rng.normal(0, 4)
            sl = c.box((-self.a, -self.b_ant, z_post - 60), (self.a, self.b_post, z_post + 8))
            if sl is None:
                continue
            x, y, z = c.grid(sl, (0.0, 0.0, 0.0))
            yb = np.where(y < 0, y / b_front, y / b_back)
            r = np.sqrt((x / a_c) ** 2 + yb**2)
            front = 0.5 * (1 - yb)  # 0 at the back, 1 at the front
            z_c = z_post - 50.0 * front
            band = (np.abs(r - 1.04) < 5.0 / a_c) & (np.abs(z - z_c) < 5.0) & (front < reach) & (np.abs(x) > 25)
            for side, name in ((1, f"rib_left_{number}"), (-1, f"rib_right_{number}")):
                m = band & ((x * side) > 0)
                c.paint(sl, m, STRUCTURE_IDS[name], self.hu["rib"], where=targets)

    # --- organs -----------------------------------------------------------------------------------------------
    def paint_lungs(self, c: Canvas) -> None:
        for side, name, z0 in ((1, "lung_lower_lobe_left", 195), (-1, "lung_lower_lobe_right", 210)):
            center = self.jitter((side * 85 * self.sx, 25 * self.sy, self.z_l1 + z0), 6)
            sl, m = c.ellipsoid(center, (80 * self.sx, 90 * self.sy, 110), wobble=0.05, rng=self.rng)
            c.paint(sl, m, STRUCTURE_IDS[name], self.hu["lung"], where=(VISCERAL,))

    def paint_vessels(self, c: Canvas) -> None:
        zs = c.axes[2]
        bif = self.z_l1 - 95
        for name, x0, r, hu, top in (
            ("aorta", 16.0, self.rng.uniform(10, 13), self.hu["blood"], 1e4),
            ("inferior_vena_cava", -24.0, self.rng.uniform(10, 13), self.hu["blood"] * 0.9, self.z_l1 + 110),
        ):
            xs = (x0 * self.sx + 3 * np.sin(zs / 70.0)).astype(np.float32)
            ys = np.full_like(xs, self.y_vb - 20 * self.sy - r)
            sl, m = c.tube_z(np.stack([xs, ys], 1), r, (bif, top))
            c.paint(sl, m, STRUCTURE_IDS[name], hu, where=(VISCERAL, STRUCTURE_IDS["lung_lower_lobe_left"]))
        y_aorta = self.y_vb - 20 * self.sy - 11
        for side, name in ((1, "iliac_artery_left"), (-1, "iliac_artery_right")):
            pts = _resample_polyline(
                np.array([[16 * self.sx, y_aorta, bif + 5], [side * 60 * self.sx, y_aorta + 10, bif - 120]]), 4.0
            )
            for p in pts:
                sl, m = c.ellipsoid(p, (7, 7, 7))
                c.paint(sl, m, STRUCTURE_IDS[name], self.hu["blood"], where=(VISCERAL,))

    def paint_kidneys(self, c: Canvas) -> None:
        for side, name, dz in ((1, "kidney_left", 10), (-1, "kidney_right", -8)):
            center = self.jitter((side * 72 * self.sx, self.y_vb + 8 * self.sy, self.z_l1 + dz), 5)
            radii = self.jitter((27, 32, 55), 3)
            angle = side * self.rng.uniform(0.4, 0.8)
            label = STRUCTURE_IDS[name]
            sl, m = c.ellipsoid(center, radii, angle=angle, wobble=0.05, rng=self.rng)
            c.paint(sl, m, label, self.hu["kidney"], where=(VISCERAL,))
            sinus = center - np.array([side * 10 * self.sx, 6, 0])
            sl, m = c.ellipsoid(sinus, radii * np.array([0.4, 0.35, 0.55]), angle=angle)
            c.paint(sl, m, label, self.hu["renal_sinus"], where=(label,))

    def paint_liver(self, c: Canvas) -> None:
        label = STRUCTURE_IDS["liver"]
        where = (VISCERAL, STRUCTURE_IDS["lung_lower_lobe_left"], STRUCTURE_IDS["lung_lower_lobe_right"])
        size = self.rng.uniform(0.85, 1.15)
        right = self.jitter((-68 * self.sx, -8 * self.sy, self.z_l1 + 78), 8)
        sl, m = c.ellipsoid(right, size * np.array([88, 92, 82]), angle=0.2, wobble=0.08, rng=self.rng)
        c.paint(sl, m, label, self.hu["liver"], where=where)
        left = self.jitter((25 * self.sx, -58 * self.sy, self.z_l1 + 92), 8)
        sl, m = c.ellipsoid(left, size * np.array([62, 34, 42]), angle=0.35, wobble=0.08, rng=self.rng)
        c.paint(sl, m, label, self.hu["liver"], where=where)
        # portal and hepatic veins: brighter tubes inside the liver in the portal-venous phase
        lo, hi = right - 50, right + 50
        for _ in range(4):
            pts = _random_walk(self.rng, self.rng.uniform(lo, hi), 14, 5.0, lo, hi)
            r = self.rng.uniform(2.5, 5.0)
            for p in pts:
                sl, m = c.ellipsoid(p, (r, r, r))
                c.paint(sl, m, None, self.hu["blood"] * 0.95, where=(label,))

    def paint_tumours(self, c: Canvas, n_tumours: int) -> list[dict]:
        liver_id = STRUCTURE_IDS["liver"]
        idx = np.flatnonzero(c.labels == liver_id)
        tumours: list[dict] = []
        if idx.size == 0:
            return tumours
        for _ in range(n_tumours):
            ijk = np.array(np.unravel_index(idx[self.rng.integers(idx.size)], c.shape))
            center = c.origin + ijk * c.spacing
            radius = float(np.exp(self.rng.uniform(np.log(5.0), np.log(25.0))))
            radii = radius * self.rng.uniform(0.8, 1.2, size=3)
            kind = str(self.rng.choice(["hypodense", "rim", "necrotic"], p=[0.6, 0.2, 0.2]))
            hu = self.hu["liver_tumor"] + self.rng.normal(0, 5)
            sl, m = c.ellipsoid(center, radii, angle=self.rng.uniform(0, np.pi), wobble=0.1, rng=self.rng)
            n = c.paint(sl, m, TUMOR, hu, where=(liver_id,))
            if n == 0:
                continue
            if kind == "rim":  # an enhancing rim around a darker centre
                c.paint(sl, m, None, self.hu["liver"] + 15, where=(TUMOR,))
                sl, m = c.ellipsoid(center, radii * 0.8)
                c.paint(sl, m, None, hu - 10, where=(TUMOR,))
            elif kind == "necrotic":
                sl, m = c.ellipsoid(center, radii * 0.5)
                c.paint(sl, m, None, self.hu["bowel_fluid"] + 5, where=(TUMOR,))
            tumours.append(
                {
                    "center_lps_mm": [round(float(v), 1) for v in center],
                    "radius_mm": round(radius, 1),
                    "hu": round(hu, 1),
                    "kind": kind,
                    "voxels": n,
                }
            )
        return tumours

    def paint_spleen(self, c: Canvas) -> None:
        where = (VISCERAL, STRUCTURE_IDS["lung_lower_lobe_left"])
        center = self.jitter((92 * self.sx, 35 * self.sy, self.z_l1 + 88), 7)
        radii = self.rng.uniform(0.8, 1.2) * np.array([28, 55, 48])
        sl, m = c.ellipsoid(center, radii, angle=self.rng.uniform(0.4, 0.9), wobble=0.06, rng=self.rng)
        c.paint(sl, m, STRUCTURE_IDS["spleen"], self.hu["spleen"], where=where)

    def paint_stomach(self, c: Canvas) -> None:
        label = STRUCTURE_IDS["stomach"]
        center = self.jitter((50 * self.sx, -40 * self.sy, self.z_l1 + 85), 6)
        radii = self.rng.uniform(0.8, 1.2) * np.array([45, 32, 50])
        angle = -self.rng.uniform(0.3, 0.7)
        sl, m = c.ellipsoid(center, radii, angle=angle, wobble=0.06, rng=self.rng)
        c.paint(sl, m, label, self.hu["bowel_wall"], where=(VISCERAL,))
        sl, m = c.ellipsoid(center, radii - 5, angle=angle)
        if sl is not None:
            y = c.axes[1][sl[1]][None, :, None]
            level = center[1] - self.rng.uniform(0.2, 0.8) * radii[1]
            c.paint(sl, m, label, np.where(y < level, self.hu["bowel_gas"], self.hu["bowel_fluid"]), where=(label,))

    def paint_bowel(self, c: Canvas) -> None:
        hu, rng = self.hu, self.rng
        z0 = self.z_l1
        colon = np.array(
            [
                [-92, -5, z0 - 115],
                [-95, -10, z0 - 40],
                [-88, -30, z0 + 15],  # ascending, hepatic flexure
                [-40, -62, z0 + 5],
                [0, -70, z0 - 10],
                [45, -62, z0 + 10],  # transverse, sagging
                [92, -10, z0 + 55],
                [100, 10, z0 - 20],
                [95, 0, z0 - 125],  # splenic flexure, descending
            ],
            dtype=np.float64,
        )
        colon[:, 0] *= self.sx
        colon[:, 1] *= self.sy
        colon += rng.normal(0, 4, size=colon.shape)
        pts = _resample_polyline(colon, 6.0)
        r = rng.uniform(18, 24)
        for part in np.array_split(pts, 4):  # each colon segment has its own gas level
            level = float(part[:, 1].mean() + rng.uniform(-0.8, 0.6) * r)
            _sphere_chain(
                c, part, r, 3.0, STRUCTURE_IDS["colon"], hu["bowel_wall"], hu["stool"], hu["bowel_gas"], level
            )
        # duodenum: a C-loop around the head of the pancreas, opening to the patient's left
        t = np.linspace(np.pi / 2, 3 * np.pi / 2, 16)
        d_c = np.array([-30 * self.sx, self.y_vb - 45 * self.sy, z0 + 20])
        duo = np.stack([d_c[0] + 32 * np.cos(t), np.full_like(t, d_c[1]), d_c[2] + 32 * np.sin(t)], 1)
        _sphere_chain(
            c, duo, 11.0, 2.5, STRUCTURE_IDS["duodenum"], hu["bowel_wall"], hu["bowel_fluid"], hu["bowel_gas"], None
        )
        # small bowel: persistent random walks in the mid and lower abdomen
        lo = np.array([-75 * self.sx, -85 * self.sy, z0 - 140])
        hi = np.array([75 * self.sx, self.y_vb - 25, z0 - 5])
        for _ in range(rng.integers(6, 10)):
            walk = _random_walk(rng, rng.uniform(lo, hi), int(rng.integers(25, 45)), 9.0, lo, hi)
            pts = _resample_polyline(walk, 5.0)
            rr = rng.uniform(11, 14)
            level = float(pts[:, 1].mean() - rr * rng.uniform(0.3, 1.2)) if rng.random() < 0.5 else None
            _sphere_chain(
                c,
                pts,
                rr,
                2.5,
                STRUCTURE_IDS["small_bowel"],
                hu["bowel_wall"],
                hu["bowel_fluid"],
                hu["bowel_gas"],
                level,
            )


def _choose_grid(
    rng: np.random.Generator, subject: _Subject, shape: Sequence[int | None] | None, spacing: Sequence[float] | None
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    nx, ny, nz = (list(shape) + [None] * 3)[:3] if shape is not None else (512, 512, None)
    nx, ny = int(nx or 512), int(ny or 512)
    if spacing is None:
        # the scanner's field of view follows the patient, within the 0.6-0.9 mm range of abdominal CT
        sxy = float(np.clip((2 * subject.a + 50) / max(nx, ny), 0.6, 0.9))
        coverage = rng.uniform(260, 330)
        sz = float(rng.uniform(1.5, 5.0)) if nz is None else float(np.clip(coverage / nz, 1.5, 5.0))
        spacing = (sxy, sxy, round(sz, 2))
    if nz is None:
        nz = int(round(rng.uniform(260, 330) / spacing[2]))
    return (nx, ny, int(nz)), tuple(float(s) for s in spacing)


def generate_abdominal_ct(
    seed: int,
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    phase: str = "portal_venous",
    n_tumours: int | None = None,
    noise_sd: float | None = None,
) -> SyntheticCT:
    """Generate one synthetic abdominal CT with its structure labels.

    Args:
        seed: the subject's seed; the same seed and arguments give the same volume, bit for bit.
        shape: voxels along x, y, z. Default 512 x 512 and as many slices as cover 260-330 mm; ``None`` entries
            are chosen the same way.
        spacing: voxel size in mm. Default: in-plane 0.6-0.9 mm fitted to the body, slices 1.5-5 mm.
        phase: ``"portal_venous"`` (the default, like the Decathlon liver scans) or ``"non_contrast"``.
        n_tumours: number of liver tumours; default 0 to 3 at random.
        noise_sd: noise standard deviation in HU; default 8-18 HU at random.

    Returns:
        a :class:`SyntheticCT` with an int16 image, uint8 labels and a NIfTI affine.

    Raises:
        ValueError: for an unknown phase, a negative tumour count or a grid smaller than 8 x 8 x 1 voxels.
    """
    rng = np.random.default_rng(seed)
    subject = _Subject(rng, phase)
    if n_tumours is not None and n_tumours < 0:
        raise ValueError(f"n_tumours must be >= 0, got {n_tumours}")
    grid_shape, grid_spacing = _choose_grid(rng, subject, shape, spacing)
    if min(grid_shape[:2]) < 8 or grid_shape[2] < 1:
        raise ValueError(f"grid {grid_shape} is too small: at least 8 x 8 voxels in-plane and 1 slice")
    z_center = subject.z_l1 + rng.uniform(0, 25)
    origin = [-(n - 1) / 2 * s for n, s in zip(grid_shape, grid_spacing, strict=True)]
    origin[1] += 10.0  # leave room for the table behind the patient
    origin[2] += z_center
    canvas = Canvas(grid_shape, grid_spacing, origin, background_hu=subject.hu["air"])
    subject.paint_body(canvas)
    subject.paint_spine(canvas)
    subject.paint_psoas(canvas)
    subject.paint_lungs(canvas)
    subject.paint_vessels(canvas)
    subject.paint_kidneys(canvas)
    subject.paint_liver(canvas)
    subject.paint_spleen(canvas)
    subject.paint_stomach(canvas)
    subject.paint_bowel(canvas)
    subject.paint_ribs(canvas)
    n = int(rng.integers(0, 4)) if n_tumours is None else int(n_tumours)
    tumours = subject.paint_tumours(canvas, n)
    sd = float(rng.uniform(8, 18)) if noise_sd is None else float(noise_sd)
    image = acquire(canvas.hu, grid_spacing, rng, noise_sd=sd)
    canvas.hu = None  # the float map is consumed by acquire
    return SyntheticCT(
        image=image, labels=canvas.labels, affine=canvas.affine(), phase=phase, seed=int(seed), tumours=tumours
    )
