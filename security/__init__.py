"""Protecting what the system holds: workflow payload encryption, API credentials."""
