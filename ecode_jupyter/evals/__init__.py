"""The app-building eval (``jupyter ecode eval``): app specs written before any run, each
built end to end through a real server and checked as a user would (``harness.py``)."""
