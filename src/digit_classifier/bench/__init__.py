"""What the benchmark and measurement scripts share: sample sets, the HTTP load generator, reports."""
