"""ldm_course: a miniature Stable Diffusion, verified piece by piece.

Read it in the order the notebooks teach it (one file per idea):

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
    04 latent diffusion
      schedules.py    beta / alpha_bar schedules, q_sample, SNR
      samplers.py     DDPM and DDIM steps and loops
      unet.py         the denoising U-Net
      diffusion.py    LatentDiffusion: VAE + U-Net + schedule, loss, guidance
    training (01 and 04 train live)
      train.py        the loop shared by both models; train_vae.py and train_ldm.py use it
      precision.py    fp32, bf16 or fp16 + gradient scaler, chosen from the device
      checkpoint.py, run_folder.py, distributed.py   files, run folders, DDP
    05 end to end
      metrics.py      PSNR, SSIM, Frechet distance, nearest neighbours
      pretrained.py   the shipped checkpoints: load_vae(), load_ldm()
      evaluate.py     `ldm-course evaluate`: the numbers of the model cards

Around them: live.py (what the notebooks train live: faces and flags, and the recipes that learn
them in minutes), viz.py (figures), checks/ (exercise checks, one file per notebook, naming the
common wrong answers they recognise), replay.py (saved outputs that replay on
any CPU), editions.py and publish.py (solved -> learner notebooks; the setup cell, Colab badge and pinned
install), cli.py with cli_args.py, cli_models.py,
limits.py and image_files.py (the `ldm-course` command), and bench/ (benchmarks and comparisons:
the lab, not the course).

Import the pieces from their modules (``from ldm_course.vae import VAE``); importing the package
itself only defines ``get_device``.
"""

from ldm_course.device import get_device

__all__ = ["get_device"]
__version__ = "0.1.0"
