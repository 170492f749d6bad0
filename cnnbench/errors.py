"""The exception types the CLI reports in one line, and the exit statuses.

The CLI prints a UserError's message as a single line and exits with status
2; it is never shown as a traceback. Say what was wrong, where, and what to do.
A RunFailed (a worker process killed or hung) is one line too, with status 1;
the detail goes to the run's train.log.
"""

# Exit statuses of the `cnnbench` command, so a scheduler can tell the outcomes apart.
EXIT_OK = 0  # the command finished
EXIT_FAILED = 1  # the run failed for a reason outside the command line: a process of it died or hung
EXIT_USER_ERROR = 2  # a mistake the user can fix; one line on stderr says which
EXIT_STOPPED = 3  # stopped by a signal after saving a checkpoint: resumable, not finished


class UserError(Exception):
    pass


class RunFailed(Exception):
    """A run that ended because a process of it died or hung (killed by a signal, out of
    memory, a collective timed out): no mistake of the user's, and nothing a traceback of
    the main process would explain. The message names the process and the cause."""


def yaml_syntax_message(err: BaseException) -> "str | None":
    """One line for a YAML syntax error anywhere in ``err``'s chain (a config or model file
    Hydra or OmegaConf read): the file, line and column, and what is wrong; None otherwise."""
    import yaml

    while err is not None and not isinstance(err, yaml.MarkedYAMLError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    at = lambda mark: f"line {mark.line + 1}, column {mark.column + 1}"  # noqa: E731
    mark = err.context_mark or err.problem_mark  # where the unclosed bracket or quote began
    where = f"{mark.name}, {at(mark)}" if mark else "a YAML file"
    problem = " ".join(str(err.problem or "invalid YAML").split())
    if err.context_mark and err.problem_mark and err.context:
        problem = f"{err.context}: {problem} at {at(err.problem_mark)}"
    hint = "indent with spaces, not tabs" if "\\t" in problem else "fix the YAML syntax there"
    return f"{where}: {problem}; {hint}"
