"""MediaNest backend API."""
