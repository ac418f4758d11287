"""Training what `dpexplorer.hub` loads: one module per model (`codec`, `latent`, `synthesis`, `pixel`),
their shared loop pieces and configs (`common`, `data`, `discriminator`), the export of a run into
`weights/` (`export`) and burst runs on a lent machine (`burst`)."""
