"""The sender's τ hint: the encoder, which has the original, tells the receiver where realism
helps. `sender` computes the per-cell levels and writes them into the `.dpx` (format version 2,
`dpexplorer.io.tauhint` codes them); `receiver` turns a hint into the τ map a decoder applies."""
