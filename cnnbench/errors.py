"""The one exception type for mistakes a user can fix.

The CLI prints its message as a single line and exits with status 2; it is
never shown as a traceback. Say what was wrong, where, and what to do.
"""


class UserError(Exception):
    pass
