"""A voxel canvas in patient coordinates on which the synthetic generators paint tissues.

The canvas holds two arrays of the same ``(X, Y, Z)`` shape: ``hu`` (float32 attenuation) and ``labels`` (uint8
structure ids). Voxel ``(i, j, k)`` lies at DICOM patient coordinates (LPS, millimetres)
``origin + (i, j, k) * spacing``: ``x`` grows towards the patient's left, ``y`` towards the back and ``z`` towards
the head. The matching NIfTI (RAS) affine is :meth:`Canvas.affine`.

Every shape is evaluated inside its own bounding box only, so painting a small organ into a 512x512x200 volume
costs what the organ costs, not what the volume costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["Canvas", "smooth_wobble"]


def smooth_wobble(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, z: np.ndarray, amplitude: float, wavelength: float
) -> np.ndarray | float:
    """A smooth random field over the open grid ``(x, y, z)`` made of separable cosine products.

    Args:
        rng: random generator (the only source of randomness).
        x: coordinates of the first axis, shape ``(X, 1, 1)``.
        y: coordinates of the second axis, shape ``(1, Y, 1)``.
        z: coordinates of the third axis, shape ``(1, 1, Z)``.
        amplitude: peak amplitude of the field.
        wavelength: typical wavelength in millimetres.

    Returns:
        an array broadcast to ``(X, Y, Z)``, or ``0.0`` when ``amplitude`` is zero.
    """
    if amplitude <= 0:
        return 0.0
    field = 0.0
    for _ in range(3):
        kx, ky, kz = 2 * np.pi / (wavelength * rng.uniform(0.7, 1.6, size=3))
        px, py, pz = rng.uniform(0, 2 * np.pi, size=3)
        field = field + np.cos(kx * x + px) * np.cos(ky * y + py) * np.cos(kz * z + pz)
    return (amplitude / 3.0) * field


class Canvas:
    """Two voxel arrays (HU and structure labels) over a regular grid in patient (LPS) coordinates.

    Args:
        shape: number of voxels along x, y, z.
        spacing: voxel size in millimetres along x, y, z.
        origin: LPS position in millimetres of voxel ``(0, 0, 0)``.
        background_hu: initial attenuation (air).

    Example::

        canvas = Canvas((64, 64, 32), (1.0, 1.0, 2.0), (-32.0, -32.0, -32.0))
        sl, inside = canvas.ellipsoid(center=(0, 0, 0), radii=(10, 10, 10))
        canvas.paint(sl, inside, label=5, hu=60.0)
    """

    def __init__(
        self,
        shape: Sequence[int],
        spacing: Sequence[float],
        origin: Sequence[float],
        background_hu: float = -1000.0,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.origin = np.asarray(origin, dtype=np.float64)
        self.hu = np.full(self.shape, background_hu, dtype=np.float32)
        self.labels = np.zeros(self.shape, dtype=np.uint8)
        self.axes = [(self.origin[d] + self.spacing[d] * np.arange(self.shape[d])).astype(np.float32) for d in range(3)]

    def affine(self) -> np.ndarray:
        """The NIfTI (RAS) affine of the grid: LPS x and y are negated."""
        affine = np.diag([-self.spacing[0], -self.spacing[1], self.spacing[2], 1.0])
        affine[:3, 3] = [-self.origin[0], -self.origin[1], self.origin[2]]
        return affine

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, ...] | None:
        """Index slices of the voxels whose centres lie in the axis-aligned box ``[lo, hi]`` (mm), or ``None``."""
        slices = []
        for d in range(3):
            start = int(np.ceil((lo[d] - self.origin[d]) / self.spacing[d]))
            stop = int(np.floor((hi[d] - self.origin[d]) / self.spacing[d])) + 1
            start, stop = max(start, 0), min(stop, self.shape[d])
            if start >= stop:
                return None
            slices.append(slice(start, stop))
        return tuple(slices)

    def grid(self, sl: tuple[slice, ...], center: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Open-grid coordinates (mm) of a box, relative to ``center``: shapes (X,1,1), (1,Y,1), (1,1,Z)."""
        x = self.axes[0][sl[0]] - np.float32(center[0])
        y = self.axes[1][sl[1]] - np.float32(center[1])
        z = self.axes[2][sl[2]] - np.float32(center[2])
        return x[:, None, None], y[None, :, None], z[None, None, :]

    def ellipsoid(
        self,
        center: Sequence[float],
        radii: Sequence[float],
        angle: float = 0.0,
        wobble: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
        """Voxels inside an ellipsoid rotated by ``angle`` (radians) about the z axis.

        Args:
            center: LPS centre in mm.
            radii: semi-axes in mm (before rotation).
            angle: in-plane rotation in radians.
            wobble: relative amplitude of a smooth random boundary perturbation (0 gives a perfect ellipsoid).
            rng: random generator, required when ``wobble > 0``.

        Returns:
            the bounding-box slices and a boolean mask of that box, or ``(None, None)`` when outside the grid.
        """
        reach = max(radii[0], radii[1]) * (1 + wobble)
        lo = (center[0] - reach, center[1] - reach, center[2] - radii[2] * (1 + wobble))
        hi = (center[0] + reach, center[1] + reach, center[2] + radii[2] * (1 + wobble))
        sl = self.box(lo, hi)
        if sl is None:
            return None, None
        x, y, z = self.grid(sl, center)
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        u = (x * c + y * s) / np.float32(radii[0])
        v = (-x * s + y * c) / np.float32(radii[1])
        d2 = u * u + v * v + (z / np.float32(radii[2])) ** 2
        if wobble > 0:
            if rng is None:
                raise ValueError("a wobbled ellipsoid needs an rng")
            bound = 1.0 + smooth_wobble(rng, x, y, z, wobble, wavelength=float(np.mean(radii)) * 1.5)
            return sl, d2 < bound * bound
        return sl, d2 < 1.0

    def tube_z(
        self, centers_xy: np.ndarray, radius: np.ndarray | float, z_range: Sequence[float]
    ) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
        """Voxels inside a tube running along z between ``z_range`` with a centre per slice.

        Args:
            centers_xy: the centre line, an array ``(Z, 2)`` of LPS x, y for every slice of the canvas.
            radius: tube radius in mm, scalar or one per slice.
            z_range: ``(z_min, z_max)`` in mm.
        """
        radius = np.broadcast_to(np.asarray(radius, dtype=np.float32), (self.shape[2],))
        zs = self.axes[2]
        in_z = (zs >= z_range[0]) & (zs <= z_range[1])
        if not in_z.any():
            return None, None
        k = np.nonzero(in_z)[0]
        cx, cy, r = centers_xy[k, 0], centers_xy[k, 1], radius[k]
        reach = float(r.max())
        lo = (float(cx.min()) - reach, float(cy.min()) - reach, float(zs[k[0]]))
        hi = (float(cx.max()) + reach, float(cy.max()) + reach, float(zs[k[-1]]))
        sl = self.box(lo, hi)
        if sl is None:
            return None, None
        x = self.axes[0][sl[0]][:, None, None]
        y = self.axes[1][sl[1]][None, :, None]
        kk = np.arange(sl[2].start, sl[2].stop)
        sel = np.searchsorted(k, kk).clip(0, len(k) - 1)
        valid = in_z[kk]
        cxs, cys, rs = cx[sel][None, None, :], cy[sel][None, None, :], r[sel][None, None, :]
        inside = (x - cxs) ** 2 + (y - cys) ** 2 < rs * rs
        return sl, inside & valid[None, None, :]

    def cylinder(
        self, center: Sequence[float], radii: Sequence[float], z_range: Sequence[float], angle: float = 0.0
    ) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
        """Voxels inside an elliptic cylinder along z with semi-axes ``radii`` (mm) between ``z_range``."""
        reach = max(radii[0], radii[1])
        sl = self.box(
            (center[0] - reach, center[1] - reach, z_range[0]), (center[0] + reach, center[1] + reach, z_range[1])
        )
        if sl is None:
            return None, None
        x, y, _ = self.grid(sl, (center[0], center[1], 0.0))
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        u = (x * c + y * s) / np.float32(radii[0])
        v = (-x * s + y * c) / np.float32(radii[1])
        inside = u * u + v * v < 1.0
        return sl, np.broadcast_to(inside, (inside.shape[0], inside.shape[1], sl[2].stop - sl[2].start))

    def paint(
        self,
        sl: tuple[slice, ...] | None,
        mask: np.ndarray | None,
        label: int | None,
        hu: float | np.ndarray,
        where: Iterable[int] | None = None,
    ) -> int:
        """Write ``label`` and ``hu`` into the voxels of ``mask`` (within box ``sl``).

        Args:
            sl: bounding-box slices from a shape method.
            mask: boolean mask of that box.
            label: structure id to write, or ``None`` to leave labels as they are (a texture inside a structure).
            hu: attenuation to write: a scalar, or an array broadcastable to the box.
            where: only overwrite voxels whose current label is one of these ids.

        Returns:
            the number of voxels written.
        """
        if sl is None or mask is None:
            return 0
        if where is not None:
            mask = mask & np.isin(self.labels[sl], np.fromiter(where, dtype=np.uint8))
        if label is not None:
            self.labels[sl][mask] = label
        hu_box = self.hu[sl]
        if np.ndim(hu) == 0:
            hu_box[mask] = hu
        else:
            hu_box[mask] = np.broadcast_to(hu, mask.shape)[mask]
        return int(mask.sum())
