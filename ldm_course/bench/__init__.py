"""The lab, not the course: benchmarks and model comparisons whose numbers the docs report
(docs/results.md, docs/experiments/). Nothing here is needed to follow the notebooks, except
`measure.peak_memory`, which notebook 05 uses for its efficiency table.

    run.py               `ldm-course bench`: runs the four benchmarks below, prints and saves JSON
    measure.py           interleaved timing, FLOP counts, peak tensor memory, parameter counts
    latent_vs_pixel.py   the same U-Net family on 4x8x8 latents and on 3x64x64 pixels
    against_diffusers.py our VAE and U-Net against diffusers' with matching configurations
    efficiency.py        GFLOP/s of a U-Net training step against a large matmul's
    quality.py           sample quality against DDIM / DDPM steps for the shipped model

U-Net runs side by side (per-category distances and near copies over seeds) are an experiment:
scripts/experiments/compare_unets.py.

Importing this package does nothing; import the modules.
"""
