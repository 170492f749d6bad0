"""`cnnbench report`: run folders -> one table of groups with error bars, plots and a TensorBoard summary.

collect.py finds and reads run folders and groups them by the config keys that vary;
stats.py holds the arithmetic (mean, std, paired t intervals); build.py turns groups into
summaries; tables.py, plots.py and hparams.py write them out. Nothing here imports the
engine or the commands: a report reads files only, so it works on runs made by any version.
"""
