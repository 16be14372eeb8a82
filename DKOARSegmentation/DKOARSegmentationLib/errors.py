"""The one exception type for problems a user can cause and can fix."""


class DKOARError(Exception):
    """A problem with the user's input, model or machine.

    The message says what is wrong and what to do; the command line prints it on one line and
    exits with code 2, the Slicer module shows it in the panel.
    """
