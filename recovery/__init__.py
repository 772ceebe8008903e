"""Resolving 2PC branches and holds whose coordinator is gone."""
