"""Synthetic cardiac MRI (3D balanced SSFP, bright blood) with left-atrium labels, Decathlon Task02_Heart-like.

Each subject is drawn from a seed: the thorax of :class:`monai_apps.data.thorax.Thorax` (the same anatomy as the
chest CT generator: chest wall, spine, lungs with their vessels, diaphragm, liver, stomach, spleen, trachea,
oesophagus, aorta and its branches, venae cavae, pulmonary trunk and arteries) with a four-chamber heart: left
ventricle and its myocardium, right ventricle, right atrium, and the **left atrium** with its appendage and the
ostia of four pulmonary veins (in 15 % of subjects the two left veins join in a common trunk, a normal variant).

Geometry follows the Medical Segmentation Decathlon Task02_Heart (King's College London left-atrium scans,
3D whole-heart bSSFP, navigator-gated, end-diastole): 320 x 320 voxels of 1.25 mm in-plane (a 400 mm field of
view), 90-130 slices of 1.37 mm (about 125-180 mm around the heart), stored as axial slices with a NIfTI affine
whose axes run to the patient's left, back and head (``LPS`` axis codes, as the chest CT generator writes).

Intensities are arbitrary units (no HU). The ideal signal of a tissue is that of a balanced SSFP sequence,
``S = PD * sqrt(T2 / T1)`` (steady state at a large flip angle), with 1.5 T relaxation times from Stanisz et al.,
"T1, T2 relaxation and magnetization transfer in tissue at 3T" (MRM 2005;54:507-512, whose 1.5 T table gives
blood T1/T2 1441/290 ms, myocardium 1030/40, liver 576/46, skeletal muscle 1008/44) and de Bazelaire et al.,
"MR imaging relaxation times of abdominal and pelvic tissues measured in vivo at 3.0 T" (Radiology
2004;230:652-659; 1.5 T: subcutaneous fat 343/58, spleen 1057/79, vertebral marrow 549/49); CSF ~4000/2000 ms.
That gives blood 0.40, myocardium 0.16, fat 0.41, muscle 0.17, liver 0.21, spleen 0.23, marrow 0.27, CSF 0.7 and
lung ~0.03 (proton density ~0.2 and a very short T2*) relative to full proton density (:data:`MR_SIGNAL`): a bright
blood pool, grey myocardium, bright fat and dark lungs, as on bSSFP images. The scanner model
(:func:`acquire_mr`) blurs the ideal image slightly, multiplies it by a smooth receive-coil bias field (brighter
near the anterior and posterior coil arrays, plus a random slow variation; 0.6-1.6 across the body) and adds
Rician noise (the magnitude of complex Gaussian noise), then scales it so that the blood pool is 450-900.

Labels (:data:`CARDIAC_IDS`): 1-7 are TotalSegmentator's ``heartchambers_highres`` ids (myocardium, left atrium,
left ventricle, right atrium, right ventricle, aorta, pulmonary artery), the rest are listed there.
:meth:`SyntheticCardiacMR.msd_label` gives the Task02 labels (0 background, 1 left atrium), where the left atrium
is the atrial body, its appendage and the pulmonary-vein ostia (the first ~1 cm of each vein), as in the LA
segmentation challenge ground truth the Decathlon task comes from.

Example::

    from monai_apps.data.synthetic_cardiac import generate_cardiac_mri

    mr = generate_cardiac_mri(seed=3)
    mr.image.shape, mr.spacing  # (320, 320, n), (1.25, 1.25, 1.37)
    la = mr.msd_label()  # 0 background, 1 left atrium
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .canvas import Canvas
from .hounsfield import Attenuation
from .thorax import IDS, Thorax

__all__ = [
    "CARDIAC_IDS",
    "LEFT_ATRIUM",
    "MR_SIGNAL",
    "SyntheticCardiacMR",
    "acquire_mr",
    "generate_cardiac_mri",
]

#: Output label ids of the cardiac MRI generator.
CARDIAC_IDS: dict[str, int] = {
    "heart_myocardium": 1,
    "heart_atrium_left": 2,
    "heart_ventricle_left": 3,
    "heart_atrium_right": 4,
    "heart_ventricle_right": 5,
    "aorta": 6,
    "pulmonary_artery": 7,
    "pulmonary_vein": 8,
    "atrial_appendage_left": 9,
    "pulmonary_vein_ostium": 10,
    "superior_vena_cava": 11,
    "inferior_vena_cava": 12,
    "lung_left": 13,
    "lung_right": 14,
    "airway": 15,
    "esophagus": 16,
    "vertebrae": 17,
    "intervertebral_disc": 18,
    "spinal_cord": 19,
    "bone": 20,
    "liver": 21,
    "stomach": 22,
    "spleen": 23,
    "subcutaneous_fat": 24,
    "skeletal_muscle": 25,
    "torso_fat": 26,
    "other_vessel": 27,
    "thyroid_gland": 28,
}
#: Structures that make up the Decathlon "left atrium" label.
LEFT_ATRIUM = ("heart_atrium_left", "atrial_appendage_left", "pulmonary_vein_ostium")

#: Ideal bSSFP signal relative to full proton density, with a between-subject SD (see the module docstring).
MR_SIGNAL: dict[str, Attenuation] = {
    "air": Attenuation(0.0, 0.0),
    "lung": Attenuation(0.03, 0.005),
    "fissure": Attenuation(0.03, 0.005),
    "subcutaneous_fat": Attenuation(0.41, 0.03),
    "torso_fat": Attenuation(0.40, 0.03),
    "skeletal_muscle": Attenuation(0.17, 0.015),
    "soft_tissue": Attenuation(0.18, 0.015),
    "myocardium": Attenuation(0.16, 0.015),
    "blood": Attenuation(0.40, 0.03),
    "liver": Attenuation(0.21, 0.02),
    "spleen": Attenuation(0.23, 0.02),
    "cortical_bone": Attenuation(0.01, 0.003),
    "cancellous_bone": Attenuation(0.27, 0.03),
    "disc": Attenuation(0.30, 0.03),
    "spinal_cord": Attenuation(0.50, 0.05),
    "cartilage": Attenuation(0.12, 0.015),
    "thyroid": Attenuation(0.22, 0.02),
    "bowel_fluid": Attenuation(0.55, 0.05),
    "bowel_gas": Attenuation(0.0, 0.0),
    "table": Attenuation(0.0, 0.0),
}


def _cardiac_name(internal: str) -> str | None:
    """The cardiac label name of a thorax structure name (``None``: background)."""
    if internal in CARDIAC_IDS:
        return internal
    rules = (
        (("lung_upper_lobe_left", "lung_lower_lobe_left"), "lung_left"),
        (("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"), "lung_right"),
        (("trachea", "bronchus"), "airway"),
        (("abdominal_fat", "epicardial_fat"), "torso_fat"),
        (("diaphragm", "autochthon_left", "autochthon_right"), "skeletal_muscle"),
        (("heart",), "heart_myocardium"),
    )
    for names, out in rules:
        if internal in names:
            return out
    if internal.startswith("vertebrae_"):
        return "vertebrae"
    if internal.startswith(("rib_", "clavicula_", "scapula_", "humerus_")) or internal in (
        "sternum",
        "costal_cartilages",
    ):
        return "bone"
    if internal.startswith(("brachiocephalic_", "subclavian_", "common_carotid_")):
        return "other_vessel"
    return None


def _output_lut() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    for name, i in IDS.items():
        out = _cardiac_name(name)
        if out is not None:
            lut[i] = CARDIAC_IDS[out]
    return lut


@dataclass
class SyntheticCardiacMR:
    """One generated cardiac MRI.

    Attributes:
        image: int16 signal volume ``(X, Y, Z)`` in arbitrary units (blood pool about ``blood_signal``).
        labels: uint8 structure ids (:data:`CARDIAC_IDS`), same shape.
        affine: 4x4 NIfTI (RAS) affine.
        seed: the seed it was drawn from.
        blood_signal: nominal blood-pool intensity before the bias field and noise.
        noise_sd: Rician noise level as a fraction of ``blood_signal``.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    seed: int
    blood_signal: float
    noise_sd: float

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of a structure by name (:data:`CARDIAC_IDS`, or ``left_atrium`` for the Decathlon label)."""
        if name == "left_atrium":
            return np.isin(self.labels, [CARDIAC_IDS[n] for n in LEFT_ATRIUM])
        if name not in CARDIAC_IDS:
            raise KeyError(f"unknown structure {name!r}")
        return self.labels == CARDIAC_IDS[name]

    def msd_label(self) -> np.ndarray:
        """Medical Segmentation Decathlon Task02_Heart labels: 0 background, 1 left atrium."""
        return self.mask("left_atrium").astype(np.uint8)

    def present_structures(self) -> list[str]:
        """Names of the structures present in this volume."""
        ids = set(np.unique(self.labels).tolist())
        return sorted(n for n, i in CARDIAC_IDS.items() if i in ids)


def bias_field(
    rng: np.random.Generator, canvas: Canvas, y_front: float, y_back: float, strength: float | None = None
) -> np.ndarray:
    """A smooth multiplicative receive-coil sensitivity over the canvas grid (float32, 1 on average).

    Anterior and posterior coil arrays make tissue near them brighter (an exponential fall-off with depth), and a
    random slow linear-plus-cosine variation adds the rest.

    Args:
        rng: random generator.
        canvas: the grid.
        y_front: LPS y (mm) of the anterior coil (the front of the body).
        y_back: LPS y (mm) of the posterior coil (the back of the body).
        strength: peak relative brightening next to a coil; default 0.3-0.7 at random.
    """
    x, y, z = (a.astype(np.float64) for a in canvas.axes)
    strength = float(rng.uniform(0.3, 0.7)) if strength is None else float(strength)
    depth = float(rng.uniform(60, 110))
    gy = strength * (
        np.exp(-np.clip(y - y_front, 0, None) / depth) + 0.8 * np.exp(-np.clip(y_back - y, 0, None) / depth)
    )
    gx = rng.normal(0, 0.08) * x / 200.0 + rng.uniform(0.05, 0.15) * np.cos(
        2 * np.pi * x / rng.uniform(350, 600) + rng.uniform(0, 6.3)
    )
    gz = rng.normal(0, 0.08) * (z - z.mean()) / 100.0
    field = np.exp(gx[:, None, None] + np.log1p(gy)[None, :, None] + gz[None, None, :]).astype(np.float32)
    return field / np.float32(field.mean())


def acquire_mr(
    signal: np.ndarray,
    spacing: Sequence[float],
    rng: np.random.Generator,
    bias: np.ndarray | float = 1.0,
    noise_sd: float = 0.05,
    reference: float = 1.0,
    psf_sigma_voxels: float = 0.5,
) -> np.ndarray:
    """Blur an ideal signal map, apply a coil bias field and add Rician noise (float32, non-negative).

    Args:
        signal: ideal signal (float32; modified in place and returned).
        spacing: voxel size (unused beyond documenting the grid; the blur is in voxels).
        rng: random generator.
        bias: multiplicative bias field broadcastable to ``signal``.
        noise_sd: standard deviation of each of the two Gaussian channels, as a fraction of ``reference``.
        reference: the signal the noise level refers to (the blood pool).
        psf_sigma_voxels: Gaussian blur (point-spread function) in voxels along every axis.
    """
    del spacing
    if psf_sigma_voxels > 0:
        ndimage.gaussian_filter(signal, sigma=psf_sigma_voxels, output=signal, truncate=3.0)
    signal *= bias
    if noise_sd > 0:
        sigma = np.float32(noise_sd * reference)
        real = rng.standard_normal(signal.shape, dtype=np.float32)
        real *= sigma
        real += signal
        imag = rng.standard_normal(signal.shape, dtype=np.float32)
        imag *= sigma
        np.hypot(real, imag, out=signal)
    return signal


def generate_cardiac_mri(
    seed: int,
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    noise_sd: float | None = None,
) -> SyntheticCardiacMR:
    """Generate one synthetic bright-blood cardiac MRI with its structure labels.

    Args:
        seed: the subject's seed; the same seed and arguments give the same volume, bit for bit.
        shape: voxels along x, y, z. Default 320 x 320 x 90-130 (Task02_Heart); ``None`` entries are chosen the
            same way.
        spacing: voxel size in mm. Default 1.25 x 1.25 x 1.37 mm (Task02_Heart).
        noise_sd: Rician noise level as a fraction of the blood-pool signal; default 0.03-0.07 at random
            (a blood signal-to-noise ratio of about 14-33).

    Returns:
        a :class:`SyntheticCardiacMR` with an int16 image, uint8 labels and a NIfTI affine.

    Raises:
        ValueError: for a negative noise level or a grid smaller than 8 x 8 x 1 voxels.

    Example::

        mr = generate_cardiac_mri(seed=0, shape=(160, 160, 60), spacing=(2.5, 2.5, 2.5))
        mr.msd_label().sum() * 2.5**3 / 1000  # left-atrium volume in mL
    """
    if noise_sd is not None and noise_sd < 0:
        raise ValueError(f"noise_sd must be >= 0, got {noise_sd}")
    rng = np.random.default_rng(seed)
    values = {name: max(float(rng.normal(a.mean, a.subject_sd)), 0.0) for name, a in MR_SIGNAL.items()}
    thorax = Thorax(rng, values, lung_gradient=0.01, lung_texture=0.005, la_scale=(1.05, 1.4))
    nx, ny, nz = (list(shape) + [None] * 3)[:3] if shape is not None else (None, None, None)
    grid_shape = (
        320 if nx is None else int(nx),
        320 if ny is None else int(ny),
        int(rng.integers(90, 131)) if nz is None else int(nz),
    )
    grid_spacing = tuple(float(s) for s in (spacing or (1.25, 1.25, 1.37)))
    if min(grid_shape[:2]) < 8 or grid_shape[2] < 1:
        raise ValueError(f"grid {grid_shape} is too small: at least 8 x 8 voxels in-plane and 1 slice")
    la_center = thorax.chambers["la_cavity"][0]
    center = (
        0.5 * float(thorax.H[0]) + float(rng.normal(0, 5)),
        float(thorax.H[1]) + 25.0 + float(rng.normal(0, 5)),
        float(la_center[2]) + float(rng.uniform(-12, 12)),
    )
    origin = [c - (n - 1) / 2 * s for c, n, s in zip(center, grid_shape, grid_spacing, strict=True)]
    canvas = Canvas(grid_shape, grid_spacing, origin, background_hu=0.0)
    thorax.paint(canvas, z_top=origin[2] + (grid_shape[2] - 1) * grid_spacing[2])
    bias = bias_field(rng, canvas, y_front=-thorax.b_ant, y_back=thorax.b_post)
    sd = float(rng.uniform(0.03, 0.07)) if noise_sd is None else float(noise_sd)
    blood = values["blood"]
    signal = acquire_mr(canvas.hu, grid_spacing, rng, bias=bias, noise_sd=sd, reference=blood)
    canvas.hu = None
    del bias
    target = float(rng.uniform(450, 900))
    signal *= np.float32(target / blood)
    np.clip(signal, 0, 32767, out=signal)
    image = np.rint(signal, out=signal).astype(np.int16)
    return SyntheticCardiacMR(
        image=image,
        labels=_output_lut()[canvas.labels],
        affine=canvas.affine(),
        seed=int(seed),
        blood_signal=round(target, 1),
        noise_sd=round(sd, 4),
    )
