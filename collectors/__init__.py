"""moego-monitor's collector side: talks to MoeGo's Webhook API and writes the SQLite archive."""

__version__ = "0.1.0"
