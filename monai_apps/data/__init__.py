"""Data: synthetic CT generators, dataset layout writers and the scanner model."""
