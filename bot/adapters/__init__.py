"""The adapters: Discord, console and CLI. They import the core's api and facade only."""
