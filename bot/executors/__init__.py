"""Training executors: implementations of ``bot.core.executor.TrainingExecutor``."""
