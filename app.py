"""DP Explorer web app: `python app.py` (also the Hugging Face Spaces entry point)."""

import os

from dpexplorer.app.layout import build_demo, configure_threads, launch

configure_threads()
demo = build_demo()

if __name__ == "__main__":
    launch(demo, server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
           server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
