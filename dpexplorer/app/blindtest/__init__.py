"""The blind test: people place decodes on the distortion–perception plane. `pairs` (what is
compared, the hidden sides), `stats` (Wilson intervals, the results table), `store` (answers in SQLite),
`report` (the plot and CSV of the results), `tab` (the Gradio tab the host app embeds)."""
