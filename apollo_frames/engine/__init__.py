"""The run: plan (dedupe, store lookup), the executor, budgets, summaries, progress."""
