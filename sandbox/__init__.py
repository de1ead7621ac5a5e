"""A local double of MoeGo's Webhook API, for demos and tests (never imported by the product).

Run it with ``python -m sandbox`` or :func:`sandbox.server.serve`; see ``sandbox/README.md``.
"""
