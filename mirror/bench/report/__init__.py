"""How results are shown: a terminal table, PNG plots and a self-contained HTML page."""
