"""HTTP API: request parsing, auth, errors, and the route functions app.py wires."""
