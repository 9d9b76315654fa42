"""`make run`'s helpers, for development only: the embedded Redis and the SMTP catcher."""
