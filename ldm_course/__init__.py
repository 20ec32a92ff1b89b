"""ldm_course: a miniature Stable Diffusion, verified piece by piece.

Import the pieces from their modules (``from ldm_course.vae import VAE``); importing the package
itself only defines ``get_device``.
"""

from ldm_course.device import get_device

__all__ = ["get_device"]
__version__ = "0.1.0"
