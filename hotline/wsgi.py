"""WSGI entry point for gunicorn: `gunicorn hotline.wsgi:app`."""

from hotline import create_app
from hotline.logging_setup import configure_logging

configure_logging()
app = create_app()
