"""newsletter: a daily research-paper digest."""

__version__ = "0.1.0"
