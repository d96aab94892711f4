"""Analysis: energy and access counts, the Eyeriss mapping, the dataflow comparison."""
