"""What admins read: limit usage for the dashboard, the delivery log, flagged sends."""
