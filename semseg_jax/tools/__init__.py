"""Tools beside training: model statistics, the README model table, benchmarks."""
