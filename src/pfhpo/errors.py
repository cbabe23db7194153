"""The one exception type a user can fix by changing their input."""


class ConfigError(ValueError):
  """Bad input: the message is one line that says what to change.

  The library names a parameter in backquotes (`lrs`); the command line
  (`pfhpo.experiment.flags.flag_message`) spells it as its flag (--lrs),
  prints the line and exits with status 2, writing nothing.
  """
