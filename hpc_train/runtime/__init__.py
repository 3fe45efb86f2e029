"""What runs inside a job: cluster environment, trainer, preemption guard, the worker entry point."""
