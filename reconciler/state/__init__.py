"""What acceld keeps between runs: the work queue, the caches and the scan marks."""
