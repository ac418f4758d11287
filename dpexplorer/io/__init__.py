"""Input and output formats, the first step of the data flow: user images in (read robustly, as
8-bit RGB arrays), exact PNGs out, the image ↔ tensor conversion, and the `.dpx` container that
carries a codec's bitstream. Imports nothing of the package but `dpexplorer.errors`."""
