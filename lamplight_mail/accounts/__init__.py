"""Email accounts as services, free of Flask request objects so the web and the worker share
them: which account a send uses (resolution), saving and removing (editing), proving they work
(checks), and whether they may send (health). Callers commit."""
