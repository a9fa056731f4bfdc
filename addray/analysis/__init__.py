"""The analysis side: loading results, fits, comparisons and the report. It reads files
only and imports neither Ray nor torch, so a report can be made on a laptop from results
copied off a cluster."""
