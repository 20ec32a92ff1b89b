"""Exercise checks for the notebooks, one file per notebook.

A check runs the learner's function and the package's reference on several seeded random inputs
and prints one line: passed; or, when the answer is wrong, which common mistake it looks like and
where to look (a misconception), else what differs (largest error, the case that broke it).
An exercise left as `raise NotImplementedError` prints "not attempted yet" and never raises, so a
notebook runs top to bottom; `result.use(learner_fn, reference_fn)` picks what to carry on with.
Before any distance, a check names what its table cannot: the wrong type, dtype or device, an input
changed in place, the global RNG, a constant factor (probes.py); every call of the answer is
stopped after time_limit seconds (TIME_LIMIT, 30 s, unless a check is given another).

    01 vae.py         check_reparameterize, check_kl, check_vae_loss
    02 perceptual.py  check_normalize_channels, check_lpips_distance, check_hinge_d_loss
    03 latents.py     check_scale_factor, check_latent_snr
    04 diffusion.py   check_q_sample, check_ddim_step, check_training_step
    05 sampling.py    check_cfg, check_slerp, check_sampling_loop
    core.py           CheckResult, Misconception, check_function (comparison and reporting)
    probes.py         what a check looks at besides the values (type, in place, RNG, factor)
    time_limit.py     TIME_LIMIT: an answer that runs longer is stopped with a message
    models.py         tiny_ldm, the small random model of the build checks
"""

from ldm_course.course.checks.core import CheckResult, Misconception, check_function
from ldm_course.course.checks.diffusion import (
    DDIM_MISCONCEPTIONS,
    Q_SAMPLE_MISCONCEPTIONS,
    TRAINING_STEP_MISCONCEPTIONS,
    check_ddim_step,
    check_q_sample,
    check_training_step,
    reference_ddim_step,
    reference_q_sample,
    reference_training_step,
)
from ldm_course.course.checks.latents import (
    LATENT_SNR_MISCONCEPTIONS,
    SCALE_FACTOR_MISCONCEPTIONS,
    check_latent_snr,
    check_scale_factor,
    reference_latent_snr,
    reference_scale_factor,
)
from ldm_course.course.checks.models import check_device, tiny_ldm
from ldm_course.course.checks.perceptual import (
    HINGE_MISCONCEPTIONS,
    LPIPS_MISCONCEPTIONS,
    NORMALIZE_MISCONCEPTIONS,
    check_hinge_d_loss,
    check_lpips_distance,
    check_normalize_channels,
    reference_hinge_d_loss,
    reference_lpips_distance,
    reference_normalize_channels,
)
from ldm_course.course.checks.sampling import (
    CFG_MISCONCEPTIONS,
    SAMPLING_MISCONCEPTIONS,
    SLERP_MISCONCEPTIONS,
    check_cfg,
    check_sampling_loop,
    check_slerp,
    reference_cfg,
    reference_sampling_loop,
    reference_slerp,
)
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.course.checks.training_update import (
    TRAINING_UPDATE_MISCONCEPTIONS,
    check_training_update,
)
from ldm_course.course.checks.unet_parts import (
    DDPM_MISCONCEPTIONS,
    EMBEDDING_MISCONCEPTIONS,
    RES_BLOCK_MISCONCEPTIONS,
    check_ddpm_step,
    check_res_block,
    check_timestep_embedding,
    reference_ddpm_step,
    reference_res_block,
    reference_timestep_embedding,
)
from ldm_course.course.checks.vae import (
    KL_MISCONCEPTIONS,
    REPARAMETERIZE_MISCONCEPTIONS,
    VAE_LOSS_MISCONCEPTIONS,
    check_kl,
    check_reparameterize,
    check_vae_loss,
    reference_kl,
    reference_reparameterize,
    reference_vae_loss,
)

# every check and the wrong answers it recognises (the tests pass each one to its check)
MISCONCEPTIONS = {
    "check_reparameterize": REPARAMETERIZE_MISCONCEPTIONS,
    "check_kl": KL_MISCONCEPTIONS,
    "check_vae_loss": VAE_LOSS_MISCONCEPTIONS,
    "check_normalize_channels": NORMALIZE_MISCONCEPTIONS,
    "check_lpips_distance": LPIPS_MISCONCEPTIONS,
    "check_hinge_d_loss": HINGE_MISCONCEPTIONS,
    "check_scale_factor": SCALE_FACTOR_MISCONCEPTIONS,
    "check_latent_snr": LATENT_SNR_MISCONCEPTIONS,
    "check_q_sample": Q_SAMPLE_MISCONCEPTIONS,
    "check_ddim_step": DDIM_MISCONCEPTIONS,
    "check_training_step": TRAINING_STEP_MISCONCEPTIONS,
    "check_cfg": CFG_MISCONCEPTIONS,
    "check_slerp": SLERP_MISCONCEPTIONS,
    "check_sampling_loop": SAMPLING_MISCONCEPTIONS,
    "check_timestep_embedding": EMBEDDING_MISCONCEPTIONS,
    "check_ddpm_step": DDPM_MISCONCEPTIONS,
    "check_training_update": TRAINING_UPDATE_MISCONCEPTIONS,
}

__all__ = [
    "MISCONCEPTIONS",
    "TIME_LIMIT",
    "TRAINING_UPDATE_MISCONCEPTIONS",
    "CheckResult",
    "Misconception",
    "check_cfg",
    "check_ddim_step",
    "check_device",
    "check_function",
    "check_hinge_d_loss",
    "check_kl",
    "check_latent_snr",
    "check_lpips_distance",
    "check_normalize_channels",
    "check_q_sample",
    "check_reparameterize",
    "check_sampling_loop",
    "check_scale_factor",
    "check_slerp",
    "check_training_step",
    "check_training_update",
    "check_vae_loss",
    "reference_cfg",
    "reference_ddim_step",
    "reference_hinge_d_loss",
    "reference_kl",
    "reference_latent_snr",
    "reference_lpips_distance",
    "reference_normalize_channels",
    "reference_q_sample",
    "reference_reparameterize",
    "reference_sampling_loop",
    "reference_scale_factor",
    "reference_slerp",
    "reference_training_step",
    "reference_vae_loss",
    "tiny_ldm",
    "DDPM_MISCONCEPTIONS",
    "EMBEDDING_MISCONCEPTIONS",
    "RES_BLOCK_MISCONCEPTIONS",
    "check_ddpm_step",
    "check_res_block",
    "check_timestep_embedding",
    "reference_ddpm_step",
    "reference_res_block",
    "reference_timestep_embedding",
]
