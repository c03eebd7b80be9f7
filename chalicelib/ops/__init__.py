"""Operating Herald: queue stats and dead letters (`dlq`), and redrives back to the queues (`redrive`).

See docs/operations.md for the design, and chalicelib/api/admin.py for the routes.
"""
