"""Third-party data-sharing gateway."""

__version__ = "0.1.0"
