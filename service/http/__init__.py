"""The aiohttp edge: the API's handlers and the web console."""
