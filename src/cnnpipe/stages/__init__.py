"""One module per pipeline stage: its run function, figure and table. Workflow scripts call these."""
