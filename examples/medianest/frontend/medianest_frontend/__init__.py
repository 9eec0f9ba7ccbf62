"""MediaNest frontend: server-rendered catalogue page over the backend API."""
