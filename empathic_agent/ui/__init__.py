"""The web UI (Gradio): ``python app.py`` or ``empathic ui``.  Needs the ``ui`` extra."""
