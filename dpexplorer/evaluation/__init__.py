"""The measured numbers and figures: every quality × decoder on a folder of images (`full_eval`,
and per family `codec_eval`, `synthesis_eval`, `pixel_eval`), JPEG/WebP at matched rates
(`baselines`), the D–P curves file and its plot (`curves`), speed and memory (`bench`), the results
page (`report`) and the Kodak set (`kodak`)."""
