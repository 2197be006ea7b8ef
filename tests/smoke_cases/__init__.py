"""One module per bundle, each defining ``CASE`` (see ``tests/bundle_cases.py``)."""
