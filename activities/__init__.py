"""Activities: each one local transaction in its service's schema (see db.unit_of_work).

What each activity is built with, and under which name a worker registers it,
is the application's wiring (wiring.activities), not this package's.
"""
