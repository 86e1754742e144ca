"""One construct per concern: storage, functions, workflow, trigger, monitoring."""
