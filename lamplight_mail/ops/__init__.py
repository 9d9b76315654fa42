"""What operators run and watch: health, metrics, structured logs, retention."""
