"""The receiver's side: the decoder families that turn a codec's ŷ into an image at some τ ∈ [0, 1]
(0 = the codec's own decoder, 1 = the family's perceptual end), all behind one interface
(`base.TauDecoder`: `reconstruct(stream, tau, *, options)`). `stream` opens a `.dpx` once, `tau` and
`taumap` hold the τ rules, `schedulers` the diffusion samplers, `layers` the denoisers' shared layers;
one module or subpackage per family (`plain`, `synthesis`, `latent`, `pixel`), and `registry`, the table
of families."""
