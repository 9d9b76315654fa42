"""Blueprints, one per area. Views stay thin: validate, call a service, redirect."""
