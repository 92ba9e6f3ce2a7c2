"""Store backends: implementations of ``bot.core.store.StoryStore``."""
