"""What the notebooks need besides the math: exercise checks, live runs, figures, replay, editions."""
