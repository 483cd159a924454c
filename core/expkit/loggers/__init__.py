"""Logger classes the logger configs name, and what every logger is sent at the start of a run."""
