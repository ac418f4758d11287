"""The latent diffusion decoder: a denoiser at latent resolution samples a perceptual latent from ŷ,
and τ blends it with ŷ before the codec's own synthesis transform."""
