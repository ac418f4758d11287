"""The interactive app, the top of the data flow: `session` (what the app does without a UI: encode,
decode with a chosen decoder family, measure), `scrub` (the τ frames a sweep renders once), `compare`
(same-size JPEG/WebP and the comparison slide) and `ui`, the Gradio front end, the only module that
imports Gradio. `app.py` at the repository root builds it. Nothing else in the package imports this."""
