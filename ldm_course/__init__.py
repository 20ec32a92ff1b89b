"""ldm_course: a miniature Stable Diffusion, verified piece by piece.

The top level is the course: the math and the models, one file per idea. Read them in the order
the notebooks teach them:

    config.py         frozen dataclasses for every model and training setting; the CLI presets
    data.py           Twemoji and image folders -> tensors in [-1, 1], deterministic splits
    01 the VAE
      blocks.py       ResBlock, attention, up/down sampling, timestep embedding
      vae.py          Encoder, Decoder, diagonal Gaussian posterior, VAE loss
    02 the perceptual loss
      perceptual.py   LPIPS: features, normalisation, learned linear heads
      discriminator.py  the PatchGAN term of the autoencoder loss
    03 latent scaling
      latents.py      latent statistics, scale factor, encode/decode with it, slerp
      sd_vae.py       Stable Diffusion's own VAE (diffusers' AutoencoderKL) as a course VAE
    04 latent diffusion
      schedules.py    beta / alpha_bar schedules, q_sample, SNR
      samplers.py     DDPM and DDIM steps and loops
      unet.py         the denoising U-Net
      diffusion.py    LatentDiffusion: VAE + U-Net + schedule, loss, guidance
    05 end to end
      metrics.py      PSNR, SSIM, Frechet distance, nearest neighbours
      judge.py        the recognisability score: a classifier of real images judges the samples
      pretrained.py   the shipped checkpoints: load_vae(), load_ldm()

The rooms around it:

    training/   the loop shared by both models (train.py), train_vae.py, train_ldm.py, and
                evaluate.py (`ldm-course evaluate`: the numbers of the model cards),
                train_judge.py (the recognisability judges)
    course/     what the notebooks need besides the math: checks/ (exercise checks, one file per
                notebook), live.py (what the notebooks train live), viz.py (figures), replay.py,
                editions.py and publish.py (solved -> learner notebooks, the setup cell)
    infra/      plumbing: checkpoint.py, run_folder.py, run_lock.py, stops.py, limits.py,
                precision.py, device.py, distributed.py, image_files.py
    cli/        the `ldm-course` command
    bench/      benchmarks and comparisons: the lab, not the course
    assets/     the dataset and the shipped checkpoints

Import the pieces from their modules (``from ldm_course.vae import VAE``). Importing the package
itself only defines ``get_device`` and keeps the pre-0.2 flat import paths working for one release
(``infra/moved.py``).
"""

from ldm_course.infra import moved
from ldm_course.infra.device import get_device

moved.install()

__all__ = ["get_device"]
__version__ = "0.1.0"
