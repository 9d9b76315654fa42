"""The web entry point: `flask --app app run` (or any WSGI server: `app:app`)."""

from lamplight_mail import create_app

app = create_app()
