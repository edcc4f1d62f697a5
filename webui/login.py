"""A login that survives a page reload: the store's page-session token in the page's URL (``?session=``).

The token is random and names nothing; the store keeps only its hash, with the account, its session
version and the time the server issued it (harmony_cli/store/sessions.py). Log out deletes it, the
lifetime counts from that issue time, and a password change or deactivation voids it.
"""
from __future__ import annotations

QUERY_KEY = "session"
