"""Thorax anatomy in patient millimetres, shared by the chest CT and the cardiac MRI generators.

:class:`Thorax` draws one subject from a random generator: body size, chest wall (fat, muscle, ribs, costal
cartilages, sternum, clavicles, scapulae), thoracic spine with discs and cord, lungs split into lobes by the oblique
and horizontal fissures, diaphragm domes with the liver, stomach and spleen beneath them, the mediastinum (trachea,
main bronchi, oesophagus, thyroid, aorta with its arch branches, brachiocephalic veins and venae cavae), a
four-chamber heart (left and right ventricles with myocardium, left atrium with its appendage and four pulmonary-vein
ostia, right atrium, pulmonary trunk and arteries) and space-filling vessel and airway trees inside the lungs.

The geometry is modality-free: every painting call names a *structure* (its label, from :data:`IDS`) and a *tissue*
(its intensity, looked up in the ``values`` mapping the caller passes: Hounsfield units for CT, relative signal for
MRI). Coordinates are DICOM patient coordinates (LPS: ``x`` to the patient's left, ``y`` to the back, ``z`` to the
head) in millimetres, with ``z = 0`` at the carina.

Label ids: TotalSegmentator ``total`` ids where that task names the structure (:data:`TS_IDS`), the extra tissue
ids of :mod:`monai_apps.data.synthetic_abdomen` (200-204) plus ``lung_tumor`` 205, ``bronchus`` 206 and
``pulmonary_artery`` 207 (:data:`EXTRA_IDS`), and ids from 240 up that only live while painting
(:data:`INTERNAL_IDS`: heart chambers, pulmonary-vein ostia, lungs before the lobes are split, abdominal fat).
Each generator maps the internal ids to its own label set at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from totalsegmentator.map_to_binary import class_map

from .canvas import Canvas

__all__ = [
    "EXTRA_IDS",
    "IDS",
    "INTERNAL_IDS",
    "LOBES",
    "THORACIC_VERTEBRAE",
    "TS_IDS",
    "Thorax",
    "capsule",
    "ellipsoid3d",
    "grow_tree",
]

#: TotalSegmentator ``total`` task: name -> label id.
TS_IDS: dict[str, int] = {name: int(i) for i, name in class_map["total"].items()}
#: Tissues the ``total`` task does not label (200-204 as in the abdominal generator).
EXTRA_IDS: dict[str, int] = {
    "subcutaneous_fat": 200,
    "skeletal_muscle": 201,
    "torso_fat": 202,
    "intervertebral_disc": 204,
    "lung_tumor": 205,
    "bronchus": 206,
    "pulmonary_artery": 207,
}
#: Ids used only while painting; the generators map them to their output labels.
INTERNAL_IDS: dict[str, int] = {
    "heart_myocardium": 240,
    "heart_atrium_left": 241,
    "heart_ventricle_left": 242,
    "heart_atrium_right": 243,
    "heart_ventricle_right": 244,
    "pulmonary_vein_ostium": 245,
    "abdominal_fat": 246,
    "lung_left": 247,
    "lung_right": 248,
    "diaphragm": 249,
    "epicardial_fat": 250,
}
IDS: dict[str, int] = {**TS_IDS, **EXTRA_IDS, **INTERNAL_IDS}
LOBES: dict[str, tuple[str, ...]] = {
    "left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
}
LOBE_IDS = tuple(IDS[n] for side in LOBES.values() for n in side)
THORACIC_VERTEBRAE = tuple(f"T{i}" for i in range(1, 13))
_SPINE = ("C5", "C6", "C7", *THORACIC_VERTEBRAE, "L1", "L2", "L3")

_LUNG_PRE = (IDS["lung_left"], IDS["lung_right"])
_SOFT = (*_LUNG_PRE, IDS["torso_fat"])
_HEART_PARTS = tuple(IDS[n] for n in ("heart_myocardium", "epicardial_fat"))
_WALL = (IDS["subcutaneous_fat"], IDS["skeletal_muscle"], IDS["torso_fat"])


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def capsule(
    canvas: Canvas, p0: Sequence[float], p1: Sequence[float], r0: float, r1: float
) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
    """Voxels within a cone-capped segment from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``), in LPS mm.

    Returns:
        the bounding-box slices and a boolean mask of that box, or ``(None, None)`` when outside the grid.
    """
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    reach = max(r0, r1)
    sl = canvas.box(np.minimum(p0, p1) - reach, np.maximum(p0, p1) + reach)
    if sl is None:
        return None, None
    x, y, z = canvas.grid(sl, p0)
    d = (p1 - p0).astype(np.float32)
    length2 = float(np.dot(d, d))
    if length2 < 1e-9:
        t = np.float32(0.0)
    else:
        t = np.clip((x * d[0] + y * d[1] + z * d[2]) / np.float32(length2), 0.0, 1.0)
    dist2 = (x - t * d[0]) ** 2 + (y - t * d[1]) ** 2 + (z - t * d[2]) ** 2
    radius = np.float32(r0) + t * np.float32(r1 - r0)
    return sl, np.broadcast_to(dist2 < radius * radius, tuple(s.stop - s.start for s in sl))


def ellipsoid3d(
    canvas: Canvas, center: Sequence[float], radii: Sequence[float], axes: np.ndarray
) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
    """Voxels inside an arbitrarily oriented ellipsoid.

    Args:
        canvas: the canvas.
        center: LPS centre in mm.
        radii: the three semi-axes in mm.
        axes: 3x3 array whose rows are the unit directions of the semi-axes.
    """
    axes = np.asarray(axes, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    half = np.sqrt(((axes * radii[:, None]) ** 2).sum(axis=0))
    sl = canvas.box(center - half, center + half)
    if sl is None:
        return None, None
    x, y, z = canvas.grid(sl, center)
    d2 = 0.0
    for i in range(3):
        a = (axes[i] / radii[i]).astype(np.float32)
        u = x * a[0] + y * a[1] + z * a[2]
        d2 = d2 + u * u
    return sl, d2 < 1.0


def grow_tree(
    rng: np.random.Generator,
    root: Sequence[float],
    points: np.ndarray,
    radius: float,
    min_radius: float = 0.6,
    min_points: int = 3,
    reach: float = 0.55,
) -> tuple[np.ndarray, list[tuple[int, int, float, float, int]]]:
    """A space-filling branching tree from ``root`` into the region sampled by ``points``.

    Each branch runs part of the way (``reach``) towards the centroid of the points it supplies; its points are
    split in two by a plane through their centroid across their longest principal axis, and each half gets a
    child whose radius follows Murray's law (``r_child = r (n_child / n)^(1/3)``). Branches stop at
    ``min_radius`` or ``min_points``, with a last segment to the centroid of their points.

    Args:
        rng: random generator (jitters the split planes).
        root: LPS start point in mm.
        points: ``(N, 3)`` points sampled uniformly from the region to supply.
        radius: radius of the root branch in mm.
        min_radius: radius at which branches stop.
        min_points: number of points at which branches stop.
        reach: fraction of the way to the centroid each non-terminal branch runs.

    Returns:
        the node positions ``(M, 3)`` and the segments ``(start node, end node, r_start, r_end, depth)``.
    """
    nodes = [np.asarray(root, dtype=np.float64)]
    segments: list[tuple[int, int, float, float, int]] = []
    stack = [(0, np.asarray(points, dtype=np.float64), float(radius), 0)]
    while stack:
        i, pts, r, depth = stack.pop()
        start = nodes[i]
        centroid = pts.mean(axis=0)
        if len(pts) <= min_points or r < min_radius:
            if np.linalg.norm(centroid - start) > r:
                nodes.append(centroid)
                segments.append((i, len(nodes) - 1, r, 0.8 * r, depth))
            continue
        end = start + reach * (centroid - start)
        nodes.append(end)
        j = len(nodes) - 1
        segments.append((i, j, r, r, depth))
        centred = pts - centroid
        _, vectors = np.linalg.eigh(centred.T @ centred)
        axis = vectors[:, -1] + 0.25 * rng.normal(size=3)
        side = centred @ axis < 0
        for part in (pts[side], pts[~side]):
            if len(part):
                stack.append((j, part, r * (len(part) / len(pts)) ** (1 / 3), depth + 1))
    return np.asarray(nodes), segments


def _polyline(points: Sequence[Sequence[float]], step: float) -> np.ndarray:
    """Points every ``step`` mm along a polyline."""
    points = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], max(int(np.ceil(s[-1] / step)), 1) + 1)
    return np.stack([np.interp(t, s, points[:, d]) for d in range(3)], axis=1)


def _chaikin(points: Sequence[Sequence[float]], rounds: int = 3) -> np.ndarray:
    """Smooth a polyline by corner cutting, keeping its two ends."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(rounds):
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        p = np.concatenate([p[:1], np.stack([q, r], axis=1).reshape(-1, 3), p[-1:]])
    return p


class Thorax:
    """One random thorax: its geometry (drawn in ``__init__``) and the painting of it onto a canvas.

    Args:
        rng: random generator; the subject is drawn from it in a fixed order.
        values: tissue name -> intensity (HU for CT, signal for MRI). Needs the tissues listed in :data:`TISSUES`.
        lung_gradient: intensity added per 100 mm towards the patient's back in the lungs (gravity-dependent
            density of a supine patient).
        lung_texture: amplitude of a smooth random field added to the lung intensity.
        la_scale: range of the left atrium's size factor (drawn uniformly; patients with atrial fibrillation,
            as in the Decathlon heart task, have larger atria).
    """

    TISSUES = (
        "air",
        "lung",
        "subcutaneous_fat",
        "torso_fat",
        "skeletal_muscle",
        "cortical_bone",
        "cancellous_bone",
        "disc",
        "spinal_cord",
        "cartilage",
        "blood",
        "myocardium",
        "soft_tissue",
        "thyroid",
        "liver",
        "spleen",
        "bowel_fluid",
        "bowel_gas",
        "table",
        "fissure",
    )

    def __init__(
        self,
        rng: np.random.Generator,
        values: Mapping[str, float],
        lung_gradient: float = 0.0,
        lung_texture: float = 0.0,
        la_scale: tuple[float, float] = (0.95, 1.2),
    ) -> None:
        missing = [t for t in self.TISSUES if t not in values]
        if missing:
            raise KeyError(f"tissue values missing: {', '.join(missing)}")
        self.rng = rng
        self._luts: dict[tuple, np.ndarray] = {}
        self.v = dict(values)
        self.lung_gradient = float(lung_gradient)
        self.lung_texture = float(lung_texture)
        u = rng.uniform
        self.sx, self.sy = float(u(0.88, 1.12)), float(u(0.88, 1.12))
        # body outline (y = 0 at the centre of the chest) and wall layers
        self.a = 165.0 * self.sx
        self.b_ant, self.b_post = 126.0 * self.sy, 112.0 * self.sy
        self.f_ant, self.f_lat, self.f_post = float(u(6, 25)), float(u(6, 30)), float(u(5, 18))
        self.muscle = float(u(9, 15))
        self.band = 10.0  # extrapleural band where the ribs run
        self.A0 = self.a - self.f_lat - self.muscle - self.band
        self.Bf0 = self.b_ant - self.f_ant - self.muscle - self.band
        self.Bb0 = self.b_post - self.f_post - self.muscle - self.band
        self.z_apex = float(u(100, 118))  # lung apices, above the carina
        # diaphragm: the right dome is higher than the left
        self.z_dome_r = float(rng.normal(-122.0, 10.0))
        self.z_dome_l = self.z_dome_r - float(u(5, 15))
        self.dome_curv = float(u(80, 100))
        # spine: T4/T5 disc near the carina, vertebral body centre y with a mild kyphosis
        self.z45 = float(u(-8, 8))
        self.yv0 = self.Bb0 - 32.0 * self.sy
        # lobes: oblique fissures (z at the back of the lung and slope), right horizontal fissure
        self.fissure_l = (float(u(5, 25)), float(u(0.85, 1.2)))
        self.fissure_r = (float(u(-5, 15)), float(u(0.85, 1.2)))
        self.z_horizontal = float(u(-40, -20))
        # aorta, heart and great vessels
        self.z_arch = float(u(28, 42))
        self.r_aorta = float(u(13.0, 16.5))
        self.r_trachea = float(u(9.0, 11.5))
        self.heart_scale = float(u(0.9, 1.1))
        self.heart_yaw = float(rng.normal(0.0, 0.12))
        self.heart_pitch = float(rng.normal(0.0, 0.08))
        self.sternal_angle = float(u(-8, 8))
        self.eso_air = bool(rng.random() < 0.4)
        self.common_left_pv = bool(rng.random() < 0.15)  # a common left pulmonary-vein trunk, a normal variant
        self.la_scale = float(u(*la_scale))
        self._layout_heart()

    # --- geometry -----------------------------------------------------------------------------------------------
    def cavity(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Half-width, front and back depth (mm) of the pleural cavity at heights ``z``."""
        z = np.asarray(z, dtype=np.float64)
        up = np.clip((z - 10.0) / (self.z_apex - 10.0), 0.0, 1.0) ** 1.5
        low = np.clip((-90.0 - z) / 80.0, 0.0, 1.0)
        return (
            self.A0 * (1 - 0.3 * up) * (1 + 0.04 * low),
            self.Bf0 * (1 - 0.22 * up),
            self.Bb0 * (1 - 0.1 * up),
        )

    def y_vertebra(self, z: np.ndarray | float) -> np.ndarray:
        """LPS y of the vertebral body centre at heights ``z`` (thoracic kyphosis)."""
        z = np.asarray(z, dtype=np.float64)
        return self.yv0 + 6.0 * np.clip(1 - ((z + 40.0) / 170.0) ** 2, -1.0, 1.0)

    def vertebra_radii(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Vertebral body semi-axes (x, y) at heights ``z``: they grow down the spine."""
        n = np.clip((self.z45 + 12.0 - np.asarray(z, dtype=np.float64)) / 24.0 + 5.0, 0.0, 14.0)
        return (14.0 + 0.6 * n) * self.sx, (11.5 + 0.45 * n) * self.sy

    def y_esophagus(self, z: np.ndarray | float) -> np.ndarray:
        """LPS y of the oesophagus centre: just in front of the vertebral bodies."""
        return self.y_vertebra(z) - self.vertebra_radii(z)[1] - 9.5

    def y_trachea(self, z: np.ndarray | float) -> np.ndarray:
        """LPS y of the trachea centre: in front of the oesophagus."""
        return self.y_esophagus(z) - 8.0 - self.r_trachea - 1.0

    def dome(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height (mm) of the diaphragm above ``(x, y)``: the higher of two paraboloid domes."""
        r2 = (x + 55.0 * self.sx) ** 2 + (0.8 * (y + 10.0)) ** 2
        l2 = (x - 60.0 * self.sx) ** 2 + (0.8 * (y + 10.0)) ** 2
        return np.maximum(self.z_dome_r - r2 / (2 * self.dome_curv), self.z_dome_l - l2 / (2 * self.dome_curv))

    def vertebra_levels(self) -> dict[str, tuple[float, float]]:
        """Body extent ``(z_bottom, z_top)`` of each vertebra from C5 to L3."""
        heights = {name: 14.0 if name.startswith("C") else 25.0 for name in _SPINE}
        for i in range(1, 13):
            heights[f"T{i}"] = 15.0 + 0.8 * i
        disc = {name: 5.0 if name.startswith(("C", "L")) else 4.0 + 0.15 * int(name[1:]) for name in _SPINE}
        levels: dict[str, tuple[float, float]] = {}
        top = self.z45 - disc["T4"] / 2  # top of T5
        i5 = _SPINE.index("T5")
        for name in _SPINE[i5:]:
            levels[name] = (top - heights[name], top)
            top -= heights[name] + disc[name]
        bottom = self.z45 + disc["T4"] / 2  # bottom of T4
        for name in reversed(_SPINE[:i5]):
            levels[name] = (bottom, bottom + heights[name])
            bottom += heights[name] + disc[name]
        return levels

    def _layout_heart(self) -> None:
        """Centre, orientation and chambers of the heart, and the great vessels' paths."""
        y_eso_front = float(self.y_esophagus(-70.0)) - 8.0
        space = y_eso_front + self.Bf0 - 4.0  # inner sternum to the front of the oesophagus at the heart's level
        k = float(np.clip(self.heart_scale * space / 100.0, 0.8, 1.15))
        self.heart_scale = k
        hx = 12.0 * self.sx + float(self.rng.normal(0, 4))
        hy = y_eso_front - 2.0 - 50.5 * k
        hz = self.z_dome_l + 52.0 * k
        self.H = np.array([hx, hy, hz])
        cy, sy = np.cos(self.heart_yaw), np.sin(self.heart_yaw)
        cp, sp = np.cos(self.heart_pitch), np.sin(self.heart_pitch)
        yaw = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        self.R = yaw @ pitch

        def at(offset: Sequence[float]) -> np.ndarray:
            return self.H + k * (self.R @ np.asarray(offset, dtype=np.float64))

        def frame(u: Sequence[float], toward: Sequence[float]) -> np.ndarray:
            u = self.R @ _unit(u)
            v = self.R @ np.asarray(toward, dtype=np.float64)
            v = _unit(v - np.dot(v, u) * u)
            return np.stack([u, v, np.cross(u, v)])

        self.at = at
        mitral, apex = np.array([10.0, 10.0, 8.0]), np.array([64.0, -42.0, -40.0])
        length = float(np.linalg.norm(apex - mitral))
        lv_axes = frame(apex - mitral, (-0.7, -0.7, 0.1))
        rv_c = np.array([2.0, -38.0, -14.0])
        lv_c = mitral + 0.45 * (apex - mitral)
        sl = self.la_scale  # a larger atrium grows sideways and up, and forwards rather than into the oesophagus
        la_c = (2.0, 30.0 - 18.0 * (np.sqrt(sl) - 1), 14.0 + 10.0 * (sl - 1))
        self.chambers = {
            "lv_cavity": (at(lv_c), k * np.array([0.47 * length, 24.0, 24.0]), lv_axes),
            "lv_outer": (at(mitral + 0.5 * (apex - mitral)), k * np.array([0.56 * length, 33.0, 33.0]), lv_axes),
            "rv_cavity": (at(rv_c), k * np.array([48.0, 17.0, 33.0]), frame((1.0, -0.25, -0.5), rv_c - lv_c)),
            "la_cavity": (
                at(la_c),
                k * np.array([32.0 * sl, 21.0 * sl, 18.0 * np.sqrt(sl)]),
                frame((1, 0, 0), (0, 0, 1)),
            ),
            "ra_cavity": (at((-46, -4, 0)), k * np.array([26.0, 32.0, 27.0]), frame((1, 0.3, 0), (0, 0, 1))),
        }
        for name, wall in (("rv", 4.0), ("la", 2.5), ("ra", 2.5)):
            c, r, ax = self.chambers[f"{name}_cavity"]
            self.chambers[f"{name}_outer"] = (c, r + wall, ax)
        la_c, la_r, la_ax = self.chambers["la_cavity"]

        def la_surface(direction: Sequence[float]) -> np.ndarray:
            d = _unit(direction)
            local = la_ax @ d / la_r
            return la_c + d / np.linalg.norm(local)

        # pulmonary veins: ostium on the LA, then out to the hilum (superior veins higher and further forward)
        y_t = float(self.y_trachea(0.0))
        lx, ly, lz = la_c
        pv = [
            ((0.8, 0.2, 0.5), (lx + 44 * self.sx, ly - 6, lz + 24)),
            ((0.8, 0.4, -0.3), (lx + 44 * self.sx, ly + 4, lz - 10)),
            ((-0.8, 0.2, 0.5), (lx - 56 * self.sx, ly - 10, lz + 20)),
            ((-0.8, 0.4, -0.3), (lx - 56 * self.sx, ly - 2, lz - 12)),
        ]
        self.pulmonary_veins = []
        for direction, hilum in pv:
            ostium = la_surface(self.R @ _unit(direction))
            out = _unit(np.asarray(hilum) - ostium)
            self.pulmonary_veins.append((ostium - 4 * out, ostium + 11 * k * out, np.asarray(hilum, dtype=np.float64)))
        if self.common_left_pv:  # a common left trunk: both left veins branch off one short ostium
            ostium = la_surface(self.R @ _unit((1.0, 0.3, 0.1)))
            out = _unit(np.array([1.0, -0.1, 0.0]))
            trunk_end = ostium + 16 * k * out
            self.pulmonary_veins[0] = (ostium - 4 * out, trunk_end, self.pulmonary_veins[0][2])
            self.pulmonary_veins[1] = (trunk_end, trunk_end, self.pulmonary_veins[1][2])
        # left atrial appendage: a finger from the antero-superior left of the atrium
        laa0 = la_surface(self.R @ _unit((0.8, -0.5, 0.3)))
        self.appendage = _chaikin([laa0 - 3 * self.R @ _unit((0.8, -0.5, 0.3)), at((40, -8, 24)), at((48, -20, 18))], 2)
        # aorta: root in the LV outflow, ascending, arch over the left main bronchus, descending beside the spine
        za, ra = self.z_arch, self.r_aorta
        av = at((4, 2, 26))
        x_desc = 20.0 * self.sx + 0.5 * ra
        top = [
            av,
            at((-10, -10, 56)),
            (-4.0, y_t - 22, za - 10),
            (4.0, y_t - 16, za),
            (x_desc + 4, y_t + 2, za - 4),
            (x_desc, float(self.y_esophagus(za - 25)) + 4, za - 24),
        ]
        zs = np.arange(za - 40.0, -300.0, -15.0)
        descending = [
            (
                x_desc - 0.08 * np.clip(-80 - z, 0, None),
                float(self.y_esophagus(z)) + 4 + 0.05 * np.clip(-80 - z, 0, None),
                z,
            )
            for z in zs
        ]
        self.aorta = _chaikin([*top, *descending], 3)
        self.r_aorta_path = np.interp(
            np.arange(len(self.aorta)), [0, 8, 30, len(self.aorta) - 1], [ra * 0.95, ra, 0.82 * ra, 0.72 * ra]
        )
        # pulmonary trunk from the right ventricular outflow, bifurcating under the arch
        pv0 = at((14, -36, 34))
        self.pa_bifurcation = np.array([10.0, y_t - 24, -6.0])
        self.pulmonary_trunk = _chaikin([pv0, at((18, -28, 56)), self.pa_bifurcation], 2)
        self.hilum_l = np.array([52.0 * self.sx, y_t + 6, -8.0])
        self.hilum_r = np.array([-50.0 * self.sx, y_t + 2, -16.0])
        self.lpa = _chaikin([self.pa_bifurcation, (34.0, y_t - 12, -1.0), self.hilum_l], 2)
        self.rpa = _chaikin([self.pa_bifurcation, (-8.0, y_t - 14, -12.0), (-30.0, y_t - 8, -14.0), self.hilum_r], 2)
        # venae cavae and brachiocephalic veins
        ra_c, ra_r, _ = self.chambers["ra_cavity"]
        x_svc = float(ra_c[0]) + 6
        self.svc = [(x_svc - 2, y_t - 22, za + 16), (x_svc, y_t - 20, za - 20), ra_c + (4, -4, 0.6 * ra_r[2])]
        self.ivc = [(x_svc + 6, ra_c[1] + 16, -400.0), (x_svc + 6, ra_c[1] + 12, self.z_dome_r - 40), ra_c]
        self.bcv_left = [(120 * self.sx, y_t - 8, za + 58), (45.0, y_t - 30, za + 34), self.svc[0]]
        self.bcv_right = [(-110 * self.sx, y_t - 4, za + 64), (x_svc - 10, y_t - 16, za + 40), self.svc[0]]

    # --- painting helpers ----------------------------------------------------------------------------------------
    def _paint(
        self,
        c: Canvas,
        sl: tuple[slice, ...] | None,
        mask: np.ndarray | None,
        structure: str | None,
        tissue: str | float | np.ndarray,
        where: Iterable[int] | None,
    ) -> int:
        """Like :meth:`Canvas.paint`, with ``where`` checked through a 256-entry lookup table (fast on small boxes)."""
        if sl is None or mask is None:
            return 0
        value = self.v[tissue] if isinstance(tissue, str) else tissue
        labels = c.labels[sl]
        if where is not None:
            key = tuple(where)
            lut = self._luts.get(key)
            if lut is None:
                lut = self._luts[key] = np.zeros(256, dtype=bool)
                lut[np.asarray(key, dtype=np.intp)] = True
            mask = mask & lut[labels]
        if structure is not None:
            labels[mask] = IDS[structure]
        hu = c.hu[sl]
        if np.ndim(value) == 0:
            hu[mask] = value
        else:
            hu[mask] = np.broadcast_to(value, mask.shape)[mask]
        return int(np.count_nonzero(mask))

    def _tube(
        self,
        c: Canvas,
        points: np.ndarray,
        radii: Sequence[float] | float,
        structure: str | None,
        tissue: str,
        where: Iterable[int] | None,
        sheath: float = 0.0,
    ) -> None:
        """Paint a tube along a polyline (a chain of capsules), optionally inside a fat sheath."""
        points = np.asarray(points, dtype=np.float64)
        radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(points),))
        where = tuple(where) if where is not None else None
        if sheath > 0:
            for i in range(len(points) - 1):
                sl, m = capsule(c, points[i], points[i + 1], radii[i] + sheath, radii[i + 1] + sheath)
                self._paint(c, sl, m, "torso_fat", "torso_fat", _LUNG_PRE)
        for i in range(len(points) - 1):
            sl, m = capsule(c, points[i], points[i + 1], radii[i], radii[i + 1])
            self._paint(c, sl, m, structure, tissue, where)

    def _body_box(self, c: Canvas) -> tuple[slice, slice]:
        """In-plane index ranges of the body (everything but the table and the air around it)."""
        sl = c.box((-self.a * 1.05 - 2, -self.b_ant - 2, -1e6), (self.a * 1.05 + 2, self.b_post + 2, 1e6))
        return (sl[0], sl[1]) if sl is not None else (slice(0, 0), slice(0, 0))

    # --- trunk: body wall, pleural cavity, lungs, mediastinal and abdominal fat, diaphragm ----------------------
    def paint_trunk(self, c: Canvas) -> None:
        """Body wall layers, the lungs (before lobes), mediastinal fat, diaphragm and abdominal fat.

        It paints first, on a fresh canvas (labels 0, air everywhere).
        """
        bx, by = self._body_box(c)
        x = c.axes[0][bx].astype(np.float32)[:, None, None]
        y = c.axes[1][by].astype(np.float32)[None, :, None]
        dome = self.dome(x[:, :, 0], y[:, :, 0]).astype(np.float32)[:, :, None]
        v = self.v
        ids = IDS
        apex_x, apex_y, apex_rx, apex_ry = 62.0 * self.sx, 12.0 * self.sy, 82.0 * self.sx, 100.0 * self.sy
        apex_c = self.z_apex - 125.0
        lung_hu = (v["lung"] + self.lung_gradient * (y / 100.0)).astype(np.float32)
        # a smooth random texture: its waves are drawn once and evaluated slab by slab
        waves = [
            (2 * np.pi / (40.0 * self.rng.uniform(0.7, 1.6, size=3)), self.rng.uniform(0, 2 * np.pi, size=3))
            for _ in range(3)
        ]
        wave = self.rng.uniform(0, 6.28)
        amp = np.float32(self.lung_texture / 3.0)
        tables = [
            tuple(
                (
                    np.cos(kv[d] * c.axes[d][(bx, by, slice(None))[d]].astype(np.float64) + ph[d])
                    * (amp if d == 0 else 1.0)
                ).astype(np.float32)
                for d in range(3)
            )
            for kv, ph in waves
        ]
        u8 = np.uint8
        value_lut = np.full(256, v["air"], dtype=np.float32)  # the canvas is fresh: only air before the trunk
        for name, tissue in (
            ("subcutaneous_fat", "subcutaneous_fat"),
            ("skeletal_muscle", "skeletal_muscle"),
            ("torso_fat", "torso_fat"),
            ("diaphragm", "skeletal_muscle"),
            ("abdominal_fat", "torso_fat"),
        ):
            value_lut[ids[name]] = v[tissue]
        for k0 in range(0, c.shape[2], 16):
            k1 = min(k0 + 16, c.shape[2])
            zs = c.axes[2][k0:k1].astype(np.float64)
            z = zs.astype(np.float32)[None, None, :]
            lab = c.labels[bx, by, k0:k1]
            hu = c.hu[bx, by, k0:k1]
            a = (self.a * (1 + 0.03 * np.sin(zs / 80.0 + wave))).astype(np.float32)[None, None, :]

            def inside(a_, bf, bb, p_back=2.0):
                yn = np.where(y < 0, -y / bf, y / bb)
                return (x / a_) ** 2 + np.abs(yn) ** p_back < 1.0

            body = inside(a, np.float32(self.b_ant), np.float32(self.b_post), 2.6)
            muscle = inside(
                a - self.f_lat, np.float32(self.b_ant - self.f_ant), np.float32(self.b_post - self.f_post), 2.6
            )
            A, Bf, Bb = (np.asarray(t, dtype=np.float32)[None, None, :] for t in self.cavity(zs))
            band = inside(A + self.band, Bf + self.band, Bb + self.band) & muscle
            cav = inside(A, Bf, Bb)
            d = z - dome
            inner = np.where(
                d > 2.5, u8(ids["torso_fat"]), np.where(d < -2.5, u8(ids["abdominal_fat"]), u8(ids["diaphragm"]))
            )
            wall = np.where(
                band,
                u8(ids["torso_fat"]),
                np.where(muscle, u8(ids["skeletal_muscle"]), np.where(body, u8(ids["subcutaneous_fat"]), lab)),
            )
            new = np.where(cav, inner, wall)
            # lungs: the cavity above the diaphragm, outside a narrow mediastinum, under the apical domes
            zc = np.clip((z - apex_c) / (self.z_apex - apex_c), 0.0, None)
            shrink = np.sqrt(np.clip(1.0 - zc**2, 0.0, 1.0)) + np.float32(1e-6)
            free = cav & (d > 2.5)
            lungs = np.zeros(new.shape, dtype=bool)
            for side, name in ((1, "lung_left"), (-1, "lung_right")):
                dome_ok = ((x - side * apex_x) / (apex_rx * shrink)) ** 2 + ((y - apex_y) / (apex_ry * shrink)) ** 2 < 1
                lung = free & (side * x > 16.0) & dome_ok
                np.copyto(new, u8(ids[name]), where=lung)
                lungs |= lung
            lab[...] = new
            hu[...] = value_lut[new]
            texture = np.float32(0.0)
            for cx, cy, cz in tables:  # a smooth random texture: products of cosines along x, y, z
                texture = texture + cx[:, None, None] * cy[None, :, None] * cz[None, None, k0:k1]
            np.copyto(hu, lung_hu + texture, where=lungs)
        # patient table under the back
        y_table = self.b_post + 6.0
        sl = c.box((-self.a - 60, y_table, -1e4), (self.a + 60, y_table + 12, 1e4))
        if sl is not None:
            self._paint(c, sl, np.ones(tuple(s.stop - s.start for s in sl), bool), None, "table", (0,))

    # --- spine and back muscles -------------------------------------------------------------------------------
    def paint_spine(self, c: Canvas) -> None:
        """Vertebrae C5-L3 (body, arch, spinous and transverse processes), discs, cord and back muscles."""
        soft = (*_WALL, *_SOFT, IDS["abdominal_fat"], IDS["diaphragm"])
        y_back = self.b_post - self.f_post
        for side, name in ((1, "autochthon_left"), (-1, "autochthon_right")):
            zs = c.axes[2]
            yc = (self.y_vertebra(zs) + 0.5 * (y_back - self.y_vertebra(zs)) + 14.0).astype(np.float32)
            rx = np.float32(24.0 * self.sx)
            ry = ((y_back - self.y_vertebra(zs)) * 0.36).astype(np.float32)
            sl = c.box((side * 34 * self.sx - 30, -1e4, -1e4), (side * 34 * self.sx + 30, 1e4, 1e4))
            if sl is None:
                continue
            x = c.axes[0][sl[0]][:, None, None] - np.float32(side * 34 * self.sx)
            y = c.axes[1][sl[1]][None, :, None] - yc[None, None, sl[2]]
            m = (x / rx) ** 2 + (y / ry[None, None, sl[2]]) ** 2 < 1.0
            self._paint(c, sl, m, name, "skeletal_muscle", soft)
        bone = (*soft, IDS["autochthon_left"], IDS["autochthon_right"])
        for name, (z0, z1) in self.vertebra_levels().items():
            zm = 0.5 * (z0 + z1)
            yv = float(self.y_vertebra(zm))
            rx, ry = (float(t) for t in self.vertebra_radii(zm))
            label = f"vertebrae_{name}"
            sl, m = c.cylinder((0, yv), (rx, ry), (z0, z1))
            self._paint(c, sl, m, label, "cortical_bone", bone)
            sl, m = c.cylinder((0, yv), (rx - 1.8, ry - 1.8), (z0 + 1.2, z1 - 1.2))
            self._paint(c, sl, m, None, "cancellous_bone", (IDS[label],))
            disc = 5.0 if name.startswith(("C", "L")) else 4.0
            sl, m = c.cylinder((0, yv), (rx, ry), (z0 - disc, z0))
            self._paint(c, sl, m, "intervertebral_disc", "disc", bone)
            y_canal = yv + ry + 8.0
            arch = self.v["cancellous_bone"] + 0.3 * (self.v["cortical_bone"] - self.v["cancellous_bone"])
            sl, m = c.cylinder((0, y_canal), (13.5, 12.0), (z0 + 2, z1 + 1))
            self._paint(c, sl, m, label, arch, bone)
            sp = min(30.0, (y_back - y_canal) * 0.75)
            sl, m = c.cylinder((0, y_canal + 8 + sp / 2), (3.5, sp / 2), (z0 - 14, z1 - 10))  # spinous process
            self._paint(c, sl, m, label, "cortical_bone", bone)
            span = 30.0 if name.startswith("T") else 22.0
            for side in (1, -1):  # transverse processes, pointing back and out
                p0, p1 = (side * 8, y_canal, zm + 3), (side * span * self.sx, y_canal + 6, zm + 4)
                sl, m = capsule(c, p0, p1, 5.0, 4.5)
                self._paint(c, sl, m, label, arch, bone)
        # spinal canal (cord in CSF) along the whole grid
        zs = c.axes[2]
        centers = np.stack(
            [np.zeros_like(zs), (self.y_vertebra(zs) + self.vertebra_radii(zs)[1] + 8.0).astype(np.float32)], 1
        )
        sl, m = c.tube_z(centers, 7.0, (-1e4, 1e4))
        self._paint(c, sl, m, "spinal_cord", "spinal_cord", None)

    # --- ribs, cartilages, sternum, clavicles, scapulae -------------------------------------------------------
    def paint_chest_wall_bones(self, c: Canvas) -> None:
        """Ribs 1-12 with costal cartilages, the sternum, clavicles and scapulae."""
        levels = self.vertebra_levels()
        # (rib, how far round to the front the bone reaches, drop of the front end below the back in mm)
        ribs = []
        for n in range(1, 13):
            z0, z1 = levels[f"T{n}"]
            reach = (0.8, 0.85, 0.86, 0.86, 0.86, 0.85, 0.84, 0.78, 0.72, 0.66, 0.5, 0.36)[n - 1]
            drop = (28, 48, 58, 62, 64, 66, 66, 64, 60, 54, 40, 30)[n - 1] * float(self.rng.uniform(0.9, 1.1))
            ribs.append((n, z1 - 2.0 + float(self.rng.normal(0, 2)), reach, drop))
        targets = (*_WALL, IDS["autochthon_left"], IDS["autochthon_right"], *_SOFT)
        bx, by = self._body_box(c)
        x = c.axes[0][bx].astype(np.float32)[:, None, None]
        y = c.axes[1][by].astype(np.float32)[None, :, None]
        sternum_w = 14.0
        for k0 in range(0, c.shape[2], 16):
            k1 = min(k0 + 16, c.shape[2])
            zs = c.axes[2][k0:k1].astype(np.float64)
            if zs.min() > levels["T1"][1] + 10 or zs.max() < levels["T12"][0] - 90:
                continue
            A, Bf, Bb = (np.asarray(t, dtype=np.float32)[None, None, :] for t in self.cavity(zs))
            yn = np.where(y < 0, y / Bf, y / Bb)
            rr = np.sqrt((x / A) ** 2 + yn**2)
            width = (A + self.band / 2) / A
            ring = np.abs(rr - width) < 5.0 / A
            idx = np.nonzero(ring)
            if idx[0].size == 0:
                continue
            xr = c.axes[0][bx][idx[0]]
            zr = zs[idx[2]].astype(np.float32)
            ynr = yn[0, idx[1], idx[2]] if yn.shape[0] == 1 else yn[idx]
            front = np.arccos(np.clip(ynr / rr[idx], -1.0, 1.0)) / np.pi  # angle round the body: 0 back, 1 front
            radial = (rr[idx] - width[0, 0, idx[2]]) * A[0, 0, idx[2]]
            lab = c.labels[bx, by, k0:k1]
            hu = c.hu[bx, by, k0:k1]
            ok = np.isin(lab[idx], np.asarray(targets, dtype=np.uint8))
            for n, z_post, reach, drop in ribs:
                if z_post + 20 < zs.min() or z_post - drop - 40 > zs.max():
                    continue
                zc = z_post - drop * np.clip(front, 0, reach)
                zc_f = z_post - drop * reach
                bone = (front <= reach) & (np.abs(xr) > 24) & ok
                half_h = 4.5 if n > 1 else 6.0
                hit = bone & (np.abs(zr - zc) < half_h) & (np.abs(radial) < 3.8)
                side_names = (f"rib_left_{n}", f"rib_right_{n}")
                for s, nm in zip((1, -1), side_names, strict=True):
                    sel = hit & (xr * s > 0)
                    pos = tuple(i[sel] for i in idx)
                    lab[pos] = IDS[nm]
                    marrow = (np.abs(zr[sel] - zc[sel]) < half_h - 1.6) & (np.abs(radial[sel]) < 2.0)
                    hu[pos] = np.where(marrow, self.v["cancellous_bone"], self.v["cortical_bone"])
                if n <= 10:  # costal cartilage: on to the sternum (1-7) or up to the costal margin (8-10)
                    rise = -0.25 * drop if n <= 7 else 0.9 * drop
                    zcc = zc_f + rise * np.clip((front - reach) / (1.0 - reach), 0, 1)
                    stop = sternum_w if n <= 7 else 30.0 + 9.0 * (n - 7)
                    cart = (
                        (front > reach) & (np.abs(xr) > stop) & ok & (np.abs(zr - zcc) < 4.5) & (np.abs(radial) < 3.8)
                    )
                    pos = tuple(i[cart] for i in idx)
                    lab[pos] = IDS["costal_cartilages"]
                    hu[pos] = self.v["cartilage"]
        # sternum: manubrium, body and xiphoid process in front of the cavity
        za = self.sternal_angle
        for z0, z1, half_w in ((za, za + 48, 26.0), (za - 108, za, 15.0), (za - 140, za - 108, 8.0)):
            for zz in np.arange(z0, z1, 4.0):
                Bf = float(self.cavity(zz)[1])
                yc = -Bf - self.band / 2
                sl, m = c.cylinder((0, yc), (half_w, 6.0), (zz, zz + 4.0))
                self._paint(c, sl, m, "sternum", "cortical_bone", targets)
                sl, m = c.cylinder((0, yc), (half_w - 2.0, 4.0), (zz, zz + 4.0))
                self._paint(c, sl, m, None, "cancellous_bone", (IDS["sternum"],))
        # clavicles: from the manubrium out and back to the shoulder
        Bf_top = float(self.cavity(za + 45)[1])
        for s, name in ((1, "clavicula_left"), (-1, "clavicula_right")):
            pts = _chaikin(
                [
                    (s * 22, -Bf_top - 14, za + 46),
                    (s * 70 * self.sx, -Bf_top - 14, za + 56),
                    (s * 140 * self.sx, -10, za + 64),
                ]
            )
            self._tube(c, pts, 7.0, name, "cortical_bone", targets)
            self._tube(c, pts, 4.0, None, "cancellous_bone", (IDS[name],))
        # scapulae: thin plates on the back of the chest wall, outside the ribs
        for k0 in range(0, c.shape[2], 16):
            k1 = min(k0 + 16, c.shape[2])
            zs = c.axes[2][k0:k1].astype(np.float64)
            if zs.min() > za + 70 or zs.max() < za - 110:
                continue
            A, Bf, Bb = (np.asarray(t, dtype=np.float32)[None, None, :] for t in self.cavity(zs))
            z = zs.astype(np.float32)[None, None, :]
            depth = np.sqrt((x / (A + 24)) ** 2 + (y / (Bb + 24)) ** 2)
            plate = (np.abs(depth - 1.0) < 3.0 / (A + 24)) & (y > 10)
            t = np.clip((za + 62 - z) / 165.0, 0, 1)  # 0 at the top of the scapula, 1 at the inferior angle
            x_med, x_lat = (45 + 20 * t) * self.sx, (135 - 55 * t) * self.sx
            for s, name in ((1, "scapula_left"), (-1, "scapula_right")):
                m = plate & (s * x > x_med) & (s * x < x_lat) & (z < za + 62) & (z > za - 103)
                m &= np.isin(c.labels[bx, by, k0:k1], np.asarray(_WALL, dtype=np.uint8))
                c.labels[bx, by, k0:k1][m] = IDS[name]
                c.hu[bx, by, k0:k1][m] = self.v["cortical_bone"]

    # --- mediastinum --------------------------------------------------------------------------------------------
    def paint_airways(self, c: Canvas, z_top: float) -> None:
        """Trachea from the top of the grid to the carina, the main bronchi, and the oesophagus."""
        soft = (*_SOFT, IDS["abdominal_fat"], IDS["diaphragm"])
        rt = self.r_trachea
        top = max(z_top + 10.0, 10.0)
        trachea = _polyline([(0.0, float(self.y_trachea(top)), top), (0.0, float(self.y_trachea(0.0)), 0.0)], 10.0)
        carina = trachea[-1]
        self.carina = carina
        self.bronchus_r = _chaikin([carina + (0, 0, 4), carina + (-14, 2, -12), carina + (-24, 4, -26)], 2)
        self.bronchus_l = _chaikin([carina + (0, 0, 4), carina + (22, 2, -10), carina + (40, 6, -25)], 2)
        # oesophagus first (behind), then the airways
        eso_bottom = self.z_dome_l - 6
        zs = np.arange(top, eso_bottom, -10.0)
        eso = [(3.0 + 0.05 * max(-z, 0), float(self.y_esophagus(z)), z) for z in zs]
        eso += [(28.0 * self.sx, float(self.y_esophagus(eso_bottom)) - 18, self.z_dome_l - 32)]
        eso = _chaikin(eso, 2)
        self._tube(c, eso, 8.0, "esophagus", "soft_tissue", soft, sheath=2.0)
        if self.eso_air:
            self._tube(c, eso[: len(eso) // 2], 2.2, None, "air", (IDS["esophagus"],))
        self._tube(c, trachea, rt, "trachea", "soft_tissue", soft, sheath=2.0)
        self._tube(c, trachea, rt - 2.0, None, "air", (IDS["trachea"],))
        for pts, r in ((self.bronchus_r, 7.5), (self.bronchus_l, 6.5)):
            self._tube(c, pts, r, "bronchus", "soft_tissue", soft)
        for pts, r in ((self.bronchus_r, 7.5), (self.bronchus_l, 6.5)):
            self._tube(c, pts, r - 1.6, None, "air", (IDS["bronchus"], IDS["trachea"]))
        # thyroid lobes beside the upper trachea
        y_thy = float(self.y_trachea(95.0)) - 4
        for s in (1, -1):
            sl, m = c.ellipsoid((s * (rt + 9), y_thy, 100.0), (9, 11, 22))
            self._paint(c, sl, m, "thyroid_gland", "thyroid", (*_SOFT, *_WALL))
        sl, m = c.ellipsoid((0, y_thy - rt - 2, 88.0), (rt + 6, 5, 8))
        self._paint(c, sl, m, "thyroid_gland", "thyroid", (*_SOFT, *_WALL))

    def paint_heart(self, c: Canvas) -> None:
        """Pericardial fat, the four chambers with myocardium, the appendage and pulmonary-vein ostia."""
        ch = self.chambers
        soft = _SOFT
        inner = (*soft, *_HEART_PARTS)
        myo = (IDS["heart_myocardium"],)
        for name in ("lv_outer", "rv_outer", "la_outer", "ra_outer"):
            c0, r, ax = ch[name]
            sl, m = ellipsoid3d(c, c0, r + 3.0, ax)
            self._paint(c, sl, m, "epicardial_fat", "torso_fat", soft)
        for name in ("ra_outer", "la_outer", "rv_outer"):
            sl, m = ellipsoid3d(c, *ch[name])
            self._paint(c, sl, m, "heart_myocardium", "myocardium", inner)
        for name, label in (
            ("ra_cavity", "heart_atrium_right"),
            ("la_cavity", "heart_atrium_left"),
            ("rv_cavity", "heart_ventricle_right"),
        ):
            sl, m = ellipsoid3d(c, *ch[name])
            self._paint(c, sl, m, label, "blood", myo)
        sl, m = ellipsoid3d(c, *ch["lv_outer"])
        self._paint(c, sl, m, "heart_myocardium", "myocardium", (*inner, IDS["heart_ventricle_right"]))
        sl, m = ellipsoid3d(c, *ch["lv_cavity"])
        self._paint(c, sl, m, "heart_ventricle_left", "blood", myo)
        # left atrial appendage and the pulmonary-vein ostia (the proximal ~1 cm of each vein)
        self._tube(
            c,
            self.appendage,
            np.linspace(7.0, 4.0, len(self.appendage)) * self.heart_scale,
            "atrial_appendage_left",
            "blood",
            (*inner, IDS["heart_ventricle_left"]),
        )
        for start, ostium_end, _ in self.pulmonary_veins:
            if np.allclose(start, ostium_end):
                continue
            self._tube(c, [start, ostium_end], 7.5 * self.heart_scale, "pulmonary_vein_ostium", "blood", inner)

    def paint_great_vessels(self, c: Canvas) -> None:
        """Aorta with its arch branches, pulmonary trunk and arteries, pulmonary veins, venae cavae."""
        soft = (*_SOFT, IDS["epicardial_fat"])
        heart = (*soft, IDS["heart_myocardium"], IDS["heart_ventricle_left"], IDS["abdominal_fat"], IDS["diaphragm"])
        self._tube(c, self.aorta, self.r_aorta_path, "aorta", "blood", heart, sheath=3.0)
        za = self.z_arch
        y_t = float(self.y_trachea(za))
        branches = (
            (
                "brachiocephalic_trunk",
                [(-2.0, y_t - 14, za + 6), (-12.0, y_t - 12, za + 30), (-16.0, y_t - 10, za + 42)],
                6.5,
            ),
            ("common_carotid_artery_right", [(-16.0, y_t - 10, za + 40), (-20.0, y_t - 6, za + 200)], 3.8),
            (
                "subclavian_artery_right",
                _chaikin(
                    [
                        (-16.0, y_t - 10, za + 40),
                        (-45.0, y_t - 4, za + 58),
                        (-90 * self.sx, y_t + 2, za + 64),
                        (-150 * self.sx, y_t + 8, za + 60),
                    ]
                ),
                4.6,
            ),
            ("common_carotid_artery_left", [(9.0, y_t - 10, za + 8), (14.0, y_t - 6, za + 200)], 3.8),
            (
                "subclavian_artery_left",
                _chaikin(
                    [
                        (20.0, y_t - 2, za + 4),
                        (28.0, y_t, za + 40),
                        (70 * self.sx, y_t + 4, za + 56),
                        (150 * self.sx, y_t + 8, za + 60),
                    ]
                ),
                4.6,
            ),
        )
        for name, pts, r in branches:
            self._tube(c, _polyline(pts, 6.0), r, name, "blood", soft, sheath=2.0)
        self._tube(c, self.pulmonary_trunk, 13.0 * self.heart_scale, "pulmonary_artery", "blood", heart, sheath=2.0)
        for pts in (self.lpa, self.rpa):
            self._tube(c, pts, 10.0 * self.heart_scale, "pulmonary_artery", "blood", soft, sheath=2.0)
        for _, ostium_end, hilum in self.pulmonary_veins:
            self._tube(c, [ostium_end, hilum], 7.0 * self.heart_scale, "pulmonary_vein", "blood", soft, sheath=1.5)
        self._tube(c, _chaikin(self.svc, 2), 10.0, "superior_vena_cava", "blood", soft, sheath=2.0)
        self._tube(c, _chaikin(self.bcv_left), 6.5, "brachiocephalic_vein_left", "blood", (*soft, *_WALL), sheath=1.5)
        self._tube(c, _chaikin(self.bcv_right), 7.0, "brachiocephalic_vein_right", "blood", (*soft, *_WALL), sheath=1.5)
        liver = (*heart, IDS["liver"])
        self._tube(c, _chaikin(self.ivc, 2), 11.5, "inferior_vena_cava", "blood", liver)

    # --- upper abdomen ------------------------------------------------------------------------------------------
    def paint_abdomen(self, c: Canvas) -> None:
        """Liver under the right dome, stomach with a gas cap and spleen under the left dome."""
        fat = (IDS["abdominal_fat"],)
        rng = self.rng
        sl, m = c.ellipsoid(
            (-45 * self.sx, 0.0, self.z_dome_r - 85),
            (135 * self.sx, 115 * self.sy, 110),
            angle=0.25,
            wobble=0.04,
            rng=rng,
        )
        self._paint(c, sl, m, "liver", "liver", fat)
        center = (58 * self.sx, -22 * self.sy, self.z_dome_l - 52)
        radii = np.array([42.0, 36.0, 48.0]) * rng.uniform(0.85, 1.15)
        sl, m = c.ellipsoid(center, radii, angle=-0.4, wobble=0.05, rng=rng)
        self._paint(c, sl, m, "stomach", "soft_tissue", fat)
        sl, m = c.ellipsoid(center, radii - 4, angle=-0.4)
        if sl is not None:
            level = center[2] + rng.uniform(0.2, 0.7) * radii[2]
            z = c.axes[2][sl[2]][None, None, :]
            value = np.where(z > level, self.v["bowel_gas"], self.v["bowel_fluid"]).astype(np.float32)
            self._paint(c, sl, m, "stomach", value, (IDS["stomach"],))
        sl, m = c.ellipsoid(
            (88 * self.sx, 48 * self.sy, self.z_dome_l - 58), (28, 52, 46), angle=0.6, wobble=0.05, rng=rng
        )
        self._paint(c, sl, m, "spleen", "spleen", fat)

    # --- lobes and fissures ---------------------------------------------------------------------------------------
    def split_lobes(self, c: Canvas) -> None:
        """Relabel each lung into its lobes by the oblique (and right horizontal) fissures; mark the fissures."""
        left, right = IDS["lung_left"], IDS["lung_right"]
        bx, by = self._body_box(c)
        fissure_dv = self.v["fissure"] - self.v["lung"]
        for k0 in range(0, c.shape[2], 16):
            k1 = min(k0 + 16, c.shape[2])
            lab = c.labels[bx, by, k0:k1]
            hu = c.hu[bx, by, k0:k1]
            for pre, (z_back, slope), side in ((left, self.fissure_l, "left"), (right, self.fissure_r, "right")):
                i, j, k = np.nonzero(lab == pre)
                if i.size == 0:
                    continue
                x, y, z = c.axes[0][bx][i], c.axes[1][by][j], c.axes[2][k0 + k]
                bow = np.float32(12.0) * (x / np.float32(self.A0)) ** 2  # the fissure bows down laterally
                zf = np.float32(z_back) + np.float32(slope) * (y - np.float32(0.75 * self.Bb0)) - bow
                d_oblique = (z - zf) / np.float32(np.sqrt(1 + slope**2))  # > 0: above/in front of the fissure
                upper = d_oblique > 0
                u8 = np.uint8
                if side == "left":
                    new = np.where(upper, u8(IDS["lung_upper_lobe_left"]), u8(IDS["lung_lower_lobe_left"]))
                    near = np.abs(d_oblique) < 0.6
                else:
                    d_h = z - np.float32(self.z_horizontal)
                    new = np.where(
                        upper,
                        np.where(d_h > 0, u8(IDS["lung_upper_lobe_right"]), u8(IDS["lung_middle_lobe_right"])),
                        u8(IDS["lung_lower_lobe_right"]),
                    )
                    near = (np.abs(d_oblique) < 0.6) | (upper & (np.abs(d_h) < 0.6))
                lab[i, j, k] = new
                hu[i[near], j[near], k[near]] += np.float32(fissure_dv)

    def sample_lung_points(self, c: Canvas, side: str, n: int) -> np.ndarray:
        """``n`` random LPS points (mm) inside the lobes of one lung (rejection sampling over the grid)."""
        ids = np.asarray([IDS[nm] for nm in LOBES[side]], dtype=np.uint8)
        found: list[np.ndarray] = []
        total = 0
        for _ in range(40):
            idx = self.rng.integers(0, c.labels.size, size=max(4 * n, 20000))
            keep = idx[np.isin(c.labels.reshape(-1)[idx], ids)]
            found.append(keep)
            total += keep.size
            if total >= n:
                break
        idx = np.concatenate(found)[:n]
        ijk = np.stack(np.unravel_index(idx, c.shape), axis=1).astype(np.float64)
        ijk += self.rng.uniform(-0.5, 0.5, size=ijk.shape)
        return c.origin + ijk * c.spacing

    # --- vessels and airways inside the lungs ---------------------------------------------------------------
    def paint_lung_trees(self, c: Canvas, n_points: int = 2500) -> dict[str, int]:
        """Pulmonary arteries with their bronchi alongside, and pulmonary veins, branching through each lung.

        Returns:
            the number of painted segments per tree kind.
        """
        counts = {"artery": 0, "vein": 0, "airway": 0}
        lobes = LOBE_IDS
        for side, hilum_a, bronchus in (
            ("left", self.hilum_l, self.bronchus_l),
            ("right", self.hilum_r, self.bronchus_r),
        ):
            pts = self.sample_lung_points(c, side, n_points)
            if len(pts) < 20:
                continue
            nodes, segs = grow_tree(self.rng, hilum_a, pts, 7.5 * self.heart_scale, min_radius=0.55)
            # bronchi run beside the arteries: offset every node sideways by the two radii
            g = _unit((0.0, 1.0, -0.3) + 0.3 * self.rng.normal(size=3))
            offset = np.zeros_like(nodes)
            for i0, i1, _, r1, _ in segs:
                d = _unit(nodes[i1] - nodes[i0]) if np.linalg.norm(nodes[i1] - nodes[i0]) > 1e-6 else g
                o = g - np.dot(g, d) * d
                o = o / max(np.linalg.norm(o), 1e-6)
                offset[i1] = o * (1.9 * r1 + 0.4)
            offset[0] = np.asarray(bronchus[-1]) - nodes[0]
            for i0, i1, r0, r1, _ in segs:
                sl, m = capsule(c, nodes[i0], nodes[i1], r0, r1)
                counts["artery"] += bool(self._paint(c, sl, m, None, "blood", lobes))
            wall: list[tuple] = []
            for i0, i1, r0, r1, depth in segs:
                if depth > 6 or r1 * 0.9 < 1.0:
                    continue
                wall.append((nodes[i0] + offset[i0], nodes[i1] + offset[i1], 0.95 * r0, 0.9 * r1))
            for p0, p1, r0, r1 in wall:
                sl, m = capsule(c, p0, p1, r0, r1)
                self._paint(c, sl, m, None, "soft_tissue", lobes)
            for p0, p1, r0, r1 in wall:
                t0, t1 = max(0.5, 0.16 * r0), max(0.5, 0.16 * r1)
                sl, m = capsule(c, p0, p1, r0 - t0, r1 - t1)
                counts["airway"] += bool(self._paint(c, sl, m, None, "air", lobes))
            # veins: their own trees from the pulmonary-vein ends at the hilum, each supplying half the lung
            veins = [pv[2] for pv in self.pulmonary_veins if (pv[2][0] > 0) == (side == "left")][-2:]
            order = np.argsort(pts[:, 2])
            halves = (pts[order[len(pts) // 2 :]], pts[order[: len(pts) // 2]])
            for root, part in zip(sorted(veins, key=lambda p: -p[2]), halves, strict=False):
                vnodes, vsegs = grow_tree(self.rng, root, part, 6.0 * self.heart_scale, min_radius=0.55, reach=0.5)
                for i0, i1, r0, r1, _ in vsegs:
                    sl, m = capsule(c, vnodes[i0], vnodes[i1], r0, r1)
                    counts["vein"] += bool(self._paint(c, sl, m, None, "blood", lobes))
        return counts

    def paint(self, c: Canvas, z_top: float) -> None:
        """Paint the whole thorax (everything but lesions) onto ``c``; ``z_top`` is the top of the grid."""
        self.paint_trunk(c)
        self.paint_spine(c)
        self.paint_airways(c, z_top)
        self.paint_heart(c)
        self.paint_abdomen(c)
        self.paint_great_vessels(c)
        self.paint_chest_wall_bones(c)
        self.split_lobes(c)
        self.paint_lung_trees(c)
