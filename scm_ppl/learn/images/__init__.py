"""Image mechanisms: a conditional VAE whose noise view is the latent code plus the pixel
residual (amortised abduction), a conditional normalizing flow whose noise view inverts
exactly, and morphometry of digit images (thickness, intensity)
to measure what a counterfactual image did."""

from scm_ppl.learn.images.flow import (
    LAYOUT,
    ConditionalFlowImage,
    CouplingNet,
    ImageFlow,
    check_layout,
    conditional_flow,
)
from scm_ppl.learn.images.morphometry import measure_intensity, measure_thickness, skeleton
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
    "ConditionalFlowImage",
    "ConditionalVAEImage",
    "ConvDecoder",
    "ConvEncoder",
    "CouplingNet",
    "ImageFlow",
    "check_image_value",
    "check_images",
    "check_layout",
    "conditional_flow",
    "conditional_vae",
    "measure_intensity",
    "measure_thickness",
    "skeleton",
]
