"""Workflows: deterministic saga code; no I/O, clocks, randomness or database imports.

Kept empty: see workflows/registry.py for the list of workflows.
"""
