"""The exceptions a user can act on: bad input, and a run that stopped."""


class ConfigError(ValueError):
  """Bad input: the message is one line that says what to change.

  The library names a parameter in backquotes (`lrs`); the command line
  (`pfhpo.experiment.flags.flag_message`) spells it as its flag (--lrs),
  prints the line and exits with status 2, writing nothing.
  """


class RunStopped(RuntimeError):
  """A run that could not make progress stopped early, its checkpoint and
  summary written: the message is one line naming the cause and the fix
  (settings in backquotes, as a ConfigError's). The command line prints it
  and exits with status 3.
  """
