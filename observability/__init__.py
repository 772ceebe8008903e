"""What operators see of the running processes: metrics endpoints."""
