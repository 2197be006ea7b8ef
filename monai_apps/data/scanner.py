"""A small CT scanner model: partial-volume blur (point-spread function) and correlated quantum noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["HU_MIN", "HU_MAX", "gaussian_noise_gain", "acquire"]

HU_MIN, HU_MAX = -1024, 3071  # the 12-bit range CT scanners store


def gaussian_noise_gain(sigma_voxels: Sequence[float], truncate: float = 4.0) -> float:
    """Factor by which a separable Gaussian filter scales the standard deviation of white noise.

    Args:
        sigma_voxels: Gaussian sigma per axis, in voxels (0 leaves that axis untouched).
        truncate: the kernel radius in sigmas, as ``scipy.ndimage.gaussian_filter`` uses it.
    """
    gain = 1.0
    for sigma in sigma_voxels:
        if sigma <= 0:
            continue
        radius = int(truncate * sigma + 0.5)
        t = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (t / sigma) ** 2)
        kernel /= kernel.sum()
        gain *= float(np.sqrt(np.sum(kernel**2)))
    return gain


def acquire(
    hu: np.ndarray,
    spacing: Sequence[float],
    rng: np.random.Generator,
    noise_sd: float = 12.0,
    psf_fwhm_mm: float = 1.0,
    slice_profile: float = 0.4,
) -> np.ndarray:
    """Turn an ideal attenuation map into a scanner-like int16 CT volume.

    White Gaussian noise is added to the ideal map and the sum is blurred once by the point-spread function, so
    the edges get partial-volume blur and the noise gets the fine-grained, correlated texture of real CT noise.
    The noise is scaled so that its standard deviation *after* blurring is ``noise_sd``.

    Args:
        hu: ideal attenuation map (float32, modified in place and returned converted).
        spacing: voxel size in mm along the three axes (the third is the slice axis).
        rng: random generator.
        noise_sd: noise standard deviation in HU in a homogeneous region of the output.
        psf_fwhm_mm: in-plane full width at half maximum of the point-spread function, in mm.
        slice_profile: Gaussian sigma along the slice axis, as a fraction of the slice spacing.

    Returns:
        int16 array clipped to the scanner range [-1024, 3071].
    """
    sigma_mm = psf_fwhm_mm / 2.3548
    sigma = (sigma_mm / spacing[0], sigma_mm / spacing[1], slice_profile)
    gain = gaussian_noise_gain(sigma)
    if noise_sd > 0:
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise *= np.float32(noise_sd / gain)
        hu += noise
        del noise
    ndimage.gaussian_filter(hu, sigma=sigma, output=hu, truncate=4.0)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return np.rint(hu, out=hu).astype(np.int16)
