"""Errors a person can cause or fix, kept apart from programming errors.

The UI turns a `UserError` into `gr.Error` with the message unchanged, so messages are
written for the person at the keyboard: what went wrong and what to do about it.
"""


class UserError(Exception):
    """A problem with the input, the weights or the environment that the user can fix."""
