"""The report's sections, each a ``write_*(ctx, ...)`` function adding its part to the document.

- :mod:`.overview`: the data summary, runs and failures, versions and closing notes;
- :mod:`.methods`: Table 1, average ranks with CD diagrams, breakdowns, the aggregation study;
- :mod:`.curves`: accuracy vs k, few-shot curves, ImageNet "d in 1";
- :mod:`.selection`: model selection on validation data, its optimism gap and the GEN methods tuned on it;
- :mod:`.collapse`: neural collapse (NC1) and the multi-proxy gain vs NC1.
"""
