"""harmony command line: one module per stage, the study store and the analysis."""
