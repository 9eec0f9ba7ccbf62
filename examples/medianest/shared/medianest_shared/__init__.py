"""Code shared by MediaNest's backend and frontend: settings, metrics, HTTP plumbing."""

__all__ = ["__version__"]
__version__ = "1.0.0"
