"""The receiver's side: the decoders that turn a codec's ŷ into an image at some τ ∈ [0, 1]
(0 = the codec's own decoder, 1 = the family's perceptual end). `tau` holds the one τ rule,
`taumap` the spatial τ (the τ brush), `schedulers` the diffusion samplers shared by the sampling
families; one subpackage or module per family (`latent`, `pixel`, `synthesis`), and `registry`,
the families by name and `reconstruct_file`, the one entry point that decodes a `.dpx` at some τ."""
