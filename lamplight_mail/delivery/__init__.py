"""Everything that sends mail, free of the web: the outbox, claims and leases, the job the
worker runs, the limiter, rollups, message building, and the transports behind one seam."""
