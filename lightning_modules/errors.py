"""Errors a user can fix. Their message is one line that says what was wrong and what to do."""


class UserError(Exception):
    """Bad input: a missing path, an unknown option, weights not in the cache, ..."""
