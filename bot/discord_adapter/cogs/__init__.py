"""One discord.py extension per feature; ``client.COG_EXTENSIONS`` lists them in load order."""
