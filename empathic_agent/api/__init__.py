"""The HTTP API (FastAPI): ``empathic serve``; keys with ``empathic api-key create --app NAME``.
Needs the ``api`` extra (fastapi, uvicorn, python-multipart)."""
