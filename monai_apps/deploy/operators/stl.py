"""Surface mesh (STL) of a segmentation, in DICOM patient coordinates (LPS, millimetres).

The SDK's ``STLConversionOperator`` (4.0) places its mesh in the wrong space: its marching-cubes vertices come in
the ``DHW`` array order but are mapped as ``(x, y, z)`` voxel indices (slice and column axes swapped), and the
series origin is never applied, so the mesh neither overlays the scan nor keeps its left/right sense. This
operator keeps the SDK's interface (ports ``image``, ``output_file``, ``stl_bytes``) and its steps (largest
connected component, smoothing, marching cubes) but maps every vertex through the series' own geometry:
column index along the row direction cosine times the column spacing, row index along the column direction cosine
times the row spacing, slice index along the slice step, from the first slice's Image Position (Patient).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from monai.deploy.operators.stl_conversion_operator import STLConversionOperator

__all__ = ["MAX_FACES", "SurfaceMeshOperator", "dicom_affine", "surface_mesh"]

logger = logging.getLogger(__name__)

#: most triangles of a surface mesh before it is meshed again on a coarser grid (about 50 MB of binary STL)
MAX_FACES = 1_000_000


def dicom_affine(meta: dict) -> np.ndarray:
    """Voxel (column, row, slice) -> LPS millimetre affine of an SDK ``Image`` made from a DICOM series.

    The SDK's ``dicom_affine_transform`` pairs the row direction with ``PixelSpacing[0]`` (the row spacing); the
    column index advances along the row direction by the *column* spacing, ``PixelSpacing[1]``. Both agree for square
    pixels; this function is right for any.
    """
    base = np.asarray(meta["dicom_affine_transform"], dtype=np.float64).copy()
    row_cos = np.asarray(meta["row_direction_cosine"], dtype=np.float64)
    col_cos = np.asarray(meta["col_direction_cosine"], dtype=np.float64)
    row_spacing, col_spacing = float(meta["row_pixel_spacing"]), float(meta["col_pixel_spacing"])
    base[:3, 0] = row_cos * col_spacing
    base[:3, 1] = col_cos * row_spacing
    if not np.any(base[:3, 2]):  # a single slice: the normal times the slice spacing
        base[:3, 2] = np.cross(row_cos, col_cos) * float(meta.get("depth_pixel_spacing") or 1.0)
    return base


def surface_mesh(
    mask: np.ndarray,
    affine: np.ndarray,
    keep_largest: bool = True,
    smooth: bool = True,
    max_faces: int | None = MAX_FACES,
):
    """A closed triangle mesh (``trimesh.Trimesh``) of a boolean ``(column, row, slice)`` mask in world mm.

    Smoothing blurs the mask (Gaussian, sigma 1 mm on each axis) before marching cubes at 0.5, which keeps the
    surface where the mask edge is; smoothing the mesh afterwards (the SDK's Taubin filter) can throw vertices of
    a ragged mask far off. A surface with more than ``max_faces`` triangles is meshed again on a coarser grid
    (marching cubes ``step_size`` 2, 3, ...: the faces fall with its square), so that a huge mask gives a file of
    tens, not hundreds, of megabytes.

    Args:
        mask: boolean volume indexed like ``affine``.
        affine: voxel -> world 4x4 affine.
        keep_largest: keep only the largest connected component.
        smooth: blur the mask by 1 mm before meshing.
        max_faces: most triangles before the grid is coarsened (``None``: no limit).
    """
    import trimesh
    from scipy.ndimage import gaussian_filter
    from skimage import measure

    mask = np.asarray(mask, dtype=bool)
    if keep_largest:
        labels, n = measure.label(mask, return_num=True)
        if n > 1:
            mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    volume = np.pad(mask, 2).astype(np.float32)
    if smooth:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        volume = gaussian_filter(volume, sigma=1.0 / spacing, truncate=2.0)
    verts, faces, _, _ = measure.marching_cubes(volume, level=0.5, allow_degenerate=False)
    if max_faces and len(faces) > max_faces:
        step = int(np.ceil(np.sqrt(len(faces) / max_faces)))
        logger.warning("surface mesh: %d faces, meshed again with a grid step of %d voxels", len(faces), step)
        verts, faces, _, _ = measure.marching_cubes(volume, level=0.5, step_size=step, allow_degenerate=False)
    verts -= 2.0  # undo the padding: vertices in voxel indices of ``mask``
    world = verts @ affine[:3, :3].T + affine[:3, 3]
    mesh = trimesh.Trimesh(vertices=world, faces=faces, process=True)
    if mesh.volume < 0:
        mesh.invert()  # normals outwards, whatever the handedness of the index-to-world map
    return mesh


class SurfaceMeshOperator(STLConversionOperator):
    """``STLConversionOperator`` whose mesh lies on the patient (LPS mm), written atomically.

    Named inputs:
        image: the segmentation ``Image`` (``DHW`` label map with the DICOM series' metadata).
        output_file: optional path overriding ``output_file``.

    Named output:
        stl_bytes: the binary STL (empty bytes when the segmentation is empty).

    Args:
        fragment: the application.
        output_file: where to write the STL (``None``: bytes only).
        class_id: label value or list of values forming the surface (default: every non-zero label).
        is_smooth: smooth the surface (a 1 mm Gaussian on the mask before meshing).
        keep_largest_connected_component: keep only the largest component.
    """

    def _convert(self, image, output_file: Path | None = None) -> bytes:  # noqa: D102 (SDK signature)
        meta = image.metadata()
        labels = np.asarray(image.asnumpy()).transpose(2, 1, 0)  # DHW -> (column, row, slice)
        ids = self._class_id
        mask = np.isin(labels, np.atleast_1d(ids)) if ids is not None else labels > 0
        if not mask.any():
            logger.warning("segmentation is empty: no surface mesh written")
            return b""
        mesh = surface_mesh(mask, dicom_affine(meta), self._keep_largest_connected_component, self._is_smooth)
        data = mesh.export(file_type="stl")
        if output_file:
            output_file = Path(output_file)
            output_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = output_file.with_name(f".{output_file.name}.{os.getpid()}.part")
            tmp.write_bytes(data)
            os.replace(tmp, output_file)
        logger.info(
            "surface mesh: %d vertices, %d faces, bounds %s mm (LPS)",
            len(mesh.vertices),
            len(mesh.faces),
            mesh.bounds.round(1).tolist(),
        )
        return data
