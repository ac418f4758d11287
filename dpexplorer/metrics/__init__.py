"""Measuring: image quality of a reconstruction against its original on the 8-bit pixels the user
sees (`image`: PSNR, MS-SSIM, LPIPS, the extra metrics, bpp), and Bjøntegaard deltas between two
rate–quality curves (`bd`)."""
