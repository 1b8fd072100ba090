"""Summarise a sweep: ``python scripts/sweep_summary.py <sweep folder>``.

Writes summary.csv, summary.md and best.json into the folder and prints summary.md.
"""

from digit_classifier.sweeps.summary import main

if __name__ == "__main__":
    main()
