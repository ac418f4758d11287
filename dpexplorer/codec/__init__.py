"""The base codec: the mean-scale hyperprior model (CompressAI) turning an image into `.dpx` bytes
and back into ŷ and x̂₀, with its architecture tables, the hyperprior's rules shared with training,
tiled transforms for large images and the guarded native entropy decoder. No file I/O: the shipped
weights are loaded by `dpexplorer.hub`."""
