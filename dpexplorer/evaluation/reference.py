"""Published Kodak results used as reference curves (facts, cited; not measured here).

Source: CompressAI repository, `results/image/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json`
and `compressai-mbt2018-mean_mse_cuda.json` (InterDigitalInc/CompressAI): mean over the 24 Kodak
images of the published MSE models, qualities 1..8, RGB PSNR.
"""

COMPRESSAI_KODAK = {
    "bmshj2018-hyperprior": {
        "bpp": [0.1313, 0.2089, 0.3199, 0.4784, 0.6687, 0.9388, 1.2592, 1.6602],
        "psnr": [27.58, 29.20, 30.97, 32.84, 34.53, 36.74, 38.58, 40.56],
        "ms_ssim": [0.9174, 0.9421, 0.9611, 0.9749, 0.9836, 0.9893, 0.9929, 0.9955],
        "source": "CompressAI results/image/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json",
    },
    "mbt2018-mean": {
        "bpp": [0.1239, 0.1980, 0.3072, 0.4606, 0.6617, 0.9144, 1.2342, 1.6191],
        "psnr": [27.70, 29.36, 31.13, 32.95, 34.97, 36.91, 38.84, 40.63],
        "ms_ssim": [0.9178, 0.9431, 0.9615, 0.9752, 0.9836, 0.9893, 0.9930, 0.9953],
        "source": "CompressAI results/image/kodak/compressai-mbt2018-mean_mse_cuda.json",
    },
}
