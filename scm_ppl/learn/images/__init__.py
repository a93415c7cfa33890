"""Image mechanisms: a conditional VAE whose noise view is the latent code plus the pixel
residual (amortised abduction; a generic convolutional decoder or a stroke decoder whose
parents set a pen's width and ink), a conditional normalizing flow whose noise view inverts
exactly, a conditional diffusion model whose noise view is DDIM inversion plus a pixel
residual; morphometry of digit images (thickness, intensity) to measure what a
counterfactual image did; counterfactual training of the VAE (a frozen regressor of the
parents must read the asked values off decoded counterfactuals)."""

from scm_ppl.learn.images.counterfactual_training import (
    CounterfactualLoss,
    ParentRegressor,
    train_parent_regressor,
)
from scm_ppl.learn.images.diffusion import (
    ConditionalDiffusionImage,
    Denoiser,
    conditional_diffusion,
    noise_level,
)
from scm_ppl.learn.images.flow import (
    LAYOUT,
    ConditionalFlowImage,
    CouplingNet,
    ImageFlow,
    check_layout,
    conditional_flow,
)
from scm_ppl.learn.images.morphometry import (
    ink_thickness,
    measure_intensity,
    measure_thickness,
    skeleton,
    upscaled_ink,
)
from scm_ppl.learn.images.stroke import StrokeDecoder
from scm_ppl.learn.images.vae import (
    ConditionalVAEImage,
    ConvDecoder,
    ConvEncoder,
    check_image_value,
    check_images,
    conditional_vae,
)

__all__ = [
    "LAYOUT",
    "ConditionalDiffusionImage",
    "ConditionalFlowImage",
    "ConditionalVAEImage",
    "ConvDecoder",
    "ConvEncoder",
    "CounterfactualLoss",
    "CouplingNet",
    "Denoiser",
    "ImageFlow",
    "ParentRegressor",
    "StrokeDecoder",
    "check_image_value",
    "check_images",
    "check_layout",
    "conditional_diffusion",
    "conditional_flow",
    "conditional_vae",
    "ink_thickness",
    "measure_intensity",
    "measure_thickness",
    "noise_level",
    "skeleton",
    "train_parent_regressor",
    "upscaled_ink",
]
