"""The commands: the only code that reads Hydra's run state (``HydraConfig``).

Each ``<name>_command(cfg)`` takes the config Hydra composed, finds what it
needs of Hydra's state (the run folder, the command-line overrides, the
model file chosen) and calls plain functions of the engine, which tests call
in-process with a config of their own.
"""
