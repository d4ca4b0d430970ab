"""Process wiring: builds the platform from Settings and serves it (TLS, uvicorn)."""
