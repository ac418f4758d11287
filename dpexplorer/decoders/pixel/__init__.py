"""The pixel-space diffusion decoder: a denoiser (at ¼ resolution by space-to-depth) samples the detail
that the codec's decode x̂₀ lacks, given ŷ and x̂₀; τ blends the images."""
